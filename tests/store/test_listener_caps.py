"""Connection caps and the pre-authentication deadline of `mailsift serve`, over real sockets:
POP3 and IMAP clients beyond the caps are refused while LMTP and the Postfix lookup still
answer, an address beyond loopback is held to its own cap, and a client trickling bytes before
it logs in is cut at the deadline."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import free_port, wait_for
from lmtp_wire import LMTPWire
from mailsift.store.settings import StoreSettings
from mailsift.tls import make_self_signed
from store_harness import StoreServer
from test_store_bounds import start_limited

pytestmark = pytest.mark.integration

MSG = b"Subject: caps\r\n\r\nstill delivered\r\n"


def first_reply(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """The server's first line (b"" when it says nothing within `timeout`)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def lookup_on(s: socket.socket, query: str) -> str:
    """One socketmap query (netstrings) on a connected socket."""
    s.settimeout(5)
    data = query.encode()
    s.sendall(str(len(data)).encode() + b":" + data + b",")
    buf = b""
    while not buf.endswith(b","):
        chunk = s.recv(1000)
        if not chunk:
            break
        buf += chunk
    return buf.partition(b":")[2][:-1].decode()


def lookup(path: str, query: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        return lookup_on(s, query)


def lmtp_delivers(srv: StoreServer) -> None:
    c = LMTPWire(srv.lmtp_addr, timeout=10)
    assert c.greeting.code == 220
    assert c.cmd("LHLO caps").code == 250
    _rr, dr = c.transaction("s@example.org", ["alice@example.test"], MSG)
    assert [r.code for r in dr] == [250], dr
    c.cmd("QUIT")
    c.close()


def outside_address() -> str | None:
    """An address of this host beyond loopback (connections from it are not exempt)."""
    try:
        out = subprocess.run(["ip", "-o", "-4", "addr", "show", "scope", "global"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return None


def connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect((source, port))
    return s


def test_defaults_are_bounded() -> None:
    s = StoreSettings()
    assert 60 <= s.login_timeout <= 180
    assert s.max_connections_per_address >= 1 and s.lmtp_max_connections >= 1 and s.lookup_max_connections >= 1


def test_idle_pop3_clients_beyond_the_cap_are_refused_and_lmtp_and_lookup_answer(
        store_server: Callable[..., StoreServer]) -> None:
    """200 idle POP3 connections under a 160-descriptor limit: the automatic cap (half the
    descriptors beyond the base, 6 each: 8) admits 8, refuses the rest at once, and LMTP and
    the lookup keep their own capacity."""
    port = free_port()
    srv = store_server(start=False, pop3=f"127.0.0.1:{port}")
    start_limited(srv, 160, 160)
    held: list[socket.socket] = []
    try:
        replies = []
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(s)
            replies.append(first_reply(s))
        admitted = [r for r in replies if r.startswith(b"+OK")]
        refused = [r for r in replies if r.startswith(b"-ERR [SYS/TEMP] too many connections")]
        assert (len(admitted), len(refused)) == (8, 192), replies[:12]
        lmtp_delivers(srv)
        assert lookup(srv.lookup_path, "mailbox alice@example.test") == "OK example.test/alice/"
        # a slot freed is a slot for the next client
        held.pop(0).close()
        wait_for(lambda: first_reply(socket.create_connection(("127.0.0.1", port), timeout=10))
                 .startswith(b"+OK"), 10)
    finally:
        for s in held:
            s.close()
    assert srv.daemon is not None and srv.daemon.alive()


def test_per_address_cap_beyond_loopback(store_server: Callable[..., StoreServer]) -> None:
    source = outside_address()
    if source is None:
        pytest.skip("this host has no address beyond loopback")
    port = free_port()
    srv = store_server(pop3=f"0.0.0.0:{port}", max_connections_per_address=3)
    held = [connect_from(source, port) for _ in range(3)]
    try:
        assert all(first_reply(s).startswith(b"+OK") for s in held)
        extra = connect_from(source, port)
        held.append(extra)
        assert first_reply(extra).startswith(b"-ERR [SYS/TEMP] too many connections")
        local = socket.create_connection(("127.0.0.1", port), timeout=10)  # loopback: exempt
        held.append(local)
        assert first_reply(local).startswith(b"+OK")
        held.pop(0).close()
        wait_for(lambda: first_reply(connect_from(source, port)).startswith(b"+OK"), 10)
    finally:
        for s in held:
            s.close()
    assert f"{source} already has 3 connections" in srv.log()


def test_imap_cap_counts_connections_served_by_the_workers(store_server: Callable[..., StoreServer]) -> None:
    port = free_port()
    srv = store_server(imap=f"127.0.0.1:{port}", imap_workers=1, max_connections=3)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    try:
        assert all(first_reply(s).startswith(b"* OK") for s in held)
        extra = socket.create_connection(("127.0.0.1", port), timeout=10)
        held.append(extra)
        assert first_reply(extra).startswith(b"* BYE [UNAVAILABLE] too many connections")
        lmtp_delivers(srv)
        held.pop(0).close()  # released when the worker reports the connection closed
        wait_for(lambda: first_reply(socket.create_connection(("127.0.0.1", port), timeout=10))
                 .startswith(b"* OK"), 10)
    finally:
        for s in held:
            s.close()


@pytest.mark.parametrize("proto", ["pop3", "imap"])
def test_a_client_trickling_bytes_before_login_is_cut_at_the_deadline(
        store_server: Callable[..., StoreServer], proto: str) -> None:
    port = free_port()
    srv = store_server(login_timeout=2, imap_workers=0, **{proto: f"127.0.0.1:{port}"})
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert first_reply(s).startswith(b"+OK" if proto == "pop3" else b"* OK")
    start = time.monotonic()
    got = b""
    reset = False
    s.settimeout(0.5)
    while time.monotonic() - start < 15:
        try:
            s.send(b"N")  # never a whole line: every byte would restart an idle timer
            chunk = s.recv(512)
        except TimeoutError:
            continue
        except ConnectionResetError:  # closed with our last bytes unread: the goodbye may be lost
            reset = True
            break
        if not chunk:
            break
        got += chunk
    elapsed = time.monotonic() - start
    s.close()
    assert 1.5 < elapsed < 6, (elapsed, got)
    assert reset or b"autologout" in got.lower(), got


def test_the_deadline_ends_at_login(store_server: Callable[..., StoreServer]) -> None:
    port = free_port()
    srv = store_server(login_timeout=2, pop3=f"127.0.0.1:{port}")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"USER alice@example.test\r\n")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"PASS pw-alice\r\n")
    assert f.readline().startswith(b"+OK")
    time.sleep(3)  # beyond the login deadline: a logged-in session is held to the idle timeout only
    s.sendall(b"STAT\r\n")
    assert f.readline().startswith(b"+OK")
    s.sendall(b"QUIT\r\n")
    assert f.readline().startswith(b"+OK")
    s.close()
    assert srv.daemon is not None and srv.daemon.alive()


def test_lmtp_and_lookup_have_caps_of_their_own(store_server: Callable[..., StoreServer]) -> None:
    port = free_port()
    srv = store_server(pop3=f"127.0.0.1:{port}", lmtp_max_connections=2, lookup_max_connections=1,
                       max_connections=1)
    def lmtp_admitted() -> LMTPWire | None:
        c = LMTPWire(srv.lmtp_addr, timeout=10)
        if c.greeting.code == 220:
            return c
        c.close()  # the readiness probe's session may not have ended yet
        return None

    pop = socket.create_connection(("127.0.0.1", port), timeout=10)
    held: list[LMTPWire] = []
    try:
        assert first_reply(pop).startswith(b"+OK")  # the one client slot is taken...
        for _ in range(2):  # ...and LMTP still has its own two
            held.append(wait_for(lmtp_admitted, 10))  # type: ignore[arg-type]
        over = socket.create_connection(srv.lmtp_addr, timeout=10)
        assert first_reply(over).startswith(b"421 4.3.2 too many connections")
        over.close()
        def lookup_admitted() -> socket.socket | None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(srv.lookup_path)
            try:
                if lookup_on(s, "domain example.test") == "OK example.test":
                    return s
            except OSError:
                pass
            s.close()
            return None

        with wait_for(lookup_admitted, 10) as first:  # type: ignore[attr-defined]
            with socket.socket(socket.AF_UNIX) as second:
                second.connect(srv.lookup_path)
                assert first_reply(second) == b""  # closed at once, nothing said
            assert lookup_on(first, "mailbox alice@example.test") == "OK example.test/alice/"
        held.pop().close()
        wait_for(lambda: LMTPWire(srv.lmtp_addr, timeout=10).greeting.code == 220, 10)
    finally:
        pop.close()
        for c in held:
            c.close()


def test_tls_handshakes_are_counted_and_held_to_the_login_deadline(
        store_server: Callable[..., StoreServer], tmp_path: Path) -> None:
    """On an implicit-TLS port a connection counts from accept, before its handshake: clients
    that never start TLS fill the cap for at most login_timeout, then they are closed."""
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    make_self_signed("localhost", cert, key)
    port = free_port()
    store_server(pop3s=f"127.0.0.1:{port}", tls_cert=str(cert), tls_key=str(key), max_connections=2,
                 login_timeout=2)
    silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        over = socket.create_connection(("127.0.0.1", port), timeout=10)
        start = time.monotonic()
        assert first_reply(over, timeout=5) == b""  # closed at once, before any handshake
        assert time.monotonic() - start < 1.5
        over.close()
        start = time.monotonic()
        for s in silent:
            assert first_reply(s, timeout=10) == b""
        assert 1.0 < time.monotonic() - start < 6
        ctx = ssl.create_default_context(cafile=str(cert))  # the slots are free again

        def greeted() -> bytes:  # the server frees a slot just after the close the client saw
            with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                    return first_reply(tls)

        assert wait_for(greeted, 5, what="a TLS session in a freed slot").startswith(b"+OK")
    finally:
        for s in silent:
            s.close()
