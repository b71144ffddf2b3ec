"""Connection caps and the pre-authentication deadline of `mailsift serve`, over real sockets:
POP3 and IMAP clients beyond the caps are refused while LMTP and the Postfix lookup still
answer, an address beyond loopback is held to its own cap, and a client trickling bytes before
it logs in is cut at the deadline."""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Callable

import pytest

from harness.procs import free_port, wait_for
from lmtp_wire import LMTPWire
from mailsift.store.settings import StoreSettings
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
    except TimeoutError:
        pass
    return data


def lookup(path: str, query: str) -> str:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(path)
        data = query.encode()
        s.sendall(str(len(data)).encode() + b":" + data + b",")
        buf = b""
        while not buf.endswith(b","):
            chunk = s.recv(1000)
            if not chunk:
                break
            buf += chunk
        return buf.partition(b":")[2][:-1].decode()


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
