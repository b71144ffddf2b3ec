"""TLS: STARTTLS and the implicit-TLS port (imaps) with a `mailsift cert`-style self-signed
certificate; plaintext logins refused before TLS from a non-loopback address."""

from __future__ import annotations

import imaplib
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from harness.procs import free_port
from imap.wire import Wire
from mailsift.tls import client_context, make_self_signed

pytestmark = pytest.mark.integration

USER, PW = "dave@example.test", "dave-pw"


def _outside_address() -> str | None:
    """A non-loopback address of this host, to connect from as a 'remote' client."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("8.8.8.8", 9))  # no packet is sent: this only picks the source address
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


@pytest.fixture
def tls_srv(imap_server):
    d = Path(tempfile.mkdtemp(prefix="imap-tls-"))
    cert, key = d / "localhost.crt", d / "localhost.key"
    make_self_signed("localhost", cert, key)
    outside = _outside_address()
    imaps_port = free_port()
    extra = {"tls_cert": str(cert), "tls_key": str(key), "imaps": f"127.0.0.1:{imaps_port}"}
    if outside:
        extra["imap"] = f"0.0.0.0:{free_port()}"
    srv = imap_server(users={USER: PW}, extra=extra)
    srv.imaps_port = imaps_port
    srv.cafile = cert
    srv.outside = outside
    return srv


def test_starttls_then_login(tls_srv) -> None:
    m = imaplib.IMAP4("localhost", tls_srv.imap_port)
    assert "STARTTLS" in m.capabilities
    m.starttls(ssl_context=_ctx(tls_srv.cafile))
    assert m.sock.version() in ("TLSv1.2", "TLSv1.3")
    typ, caps = m._simple_command("CAPABILITY")
    assert b"STARTTLS" not in m.untagged_responses.get("CAPABILITY", [b""])[-1]
    assert m.login(USER, PW)[0] == "OK"
    m.logout()


def test_implicit_tls_port(tls_srv) -> None:
    m = imaplib.IMAP4_SSL("localhost", tls_srv.imaps_port, ssl_context=_ctx(tls_srv.cafile))
    assert "STARTTLS" not in m.capabilities
    assert m.login(USER, PW)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()


def test_plaintext_login_refused_before_tls_from_outside(tls_srv) -> None:
    if not tls_srv.outside:
        pytest.skip("this host has no non-loopback address")
    w = Wire(tls_srv.outside, tls_srv.imap_port)
    assert b"LOGINDISABLED" in w.greeting and b"AUTH=PLAIN" not in w.greeting
    _, done = w.command(f'LOGIN "{USER}" "{PW}"')
    assert b"NO [PRIVACYREQUIRED]" in done
    _, done = w.command("AUTHENTICATE PLAIN AGRhdmVAZXhhbXBsZS50ZXN0AGRhdmUtcHc=")
    assert b"NO [PRIVACYREQUIRED]" in done
    w.close()
    m = imaplib.IMAP4(tls_srv.outside, tls_srv.imap_port)
    m.starttls(ssl_context=_ctx(tls_srv.cafile, check_hostname=False))
    assert m.login(USER, PW)[0] == "OK"
    m.logout()


def test_starttls_ignores_commands_pipelined_in_the_clear(tls_srv) -> None:
    s = socket.create_connection(("127.0.0.1", tls_srv.imap_port))
    s.recv(4096)
    # an injected command after STARTTLS must not be executed inside the TLS session
    s.sendall(b"a STARTTLS\r\nb LOGIN dave@example.test dave-pw\r\n")
    buf = b""
    while b"a OK" not in buf:
        buf += s.recv(4096)
    tls = _ctx(tls_srv.cafile).wrap_socket(s, server_hostname="localhost")
    tls.sendall(b"c CAPABILITY\r\n")
    reply = b""
    while b"c OK" not in reply:
        reply += tls.recv(4096)
    assert b"b OK" not in reply and b"AUTH=PLAIN" in reply  # still not logged in
    tls.close()


def _ctx(cafile: Path, check_hostname: bool = True) -> ssl.SSLContext:
    """Verifies the chain against our self-signed certificate (made for "localhost")."""
    ctx = client_context(cafile)
    ctx.check_hostname = check_hostname
    return ctx


def test_a_replacement_worker_serves_tls_with_the_key_read_at_start(tls_srv) -> None:
    """Workers get the certificate and key from the main process (memory files), not from the
    disk: a worker started to replace a dead one serves TLS even when the key can no longer be
    read, as after run_as dropped root with a key only root may read."""
    import os

    from harness.procs import wait_for

    def workers() -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == tls_srv.daemon.pid and b"mailsift.serve.workers" in cmd:
                    out.append(int(entry))
        return sorted(out)

    def tls_logins() -> bool:
        m = imaplib.IMAP4("localhost", tls_srv.imap_port, timeout=10)
        m.starttls(ssl_context=_ctx(tls_srv.cafile))
        ok = m.login(USER, PW)[0] == "OK"
        m.logout()
        s = imaplib.IMAP4_SSL("localhost", tls_srv.imaps_port, ssl_context=_ctx(tls_srv.cafile), timeout=10)
        ok = ok and s.login(USER, PW)[0] == "OK"
        s.logout()
        return ok

    from mailsift.serve.workers import worker_count
    from mailsift.store.settings import StoreSettings

    expected = worker_count(StoreSettings())
    assert expected, "this machine gives the server IMAP workers"
    # the fixture waits for the listeners; the workers may still be starting (seen under load)
    before = wait_for(lambda: w if len(w := workers()) == expected else [], 30, what="IMAP workers")
    assert tls_logins()
    key = Path(str(tls_srv.cafile).replace(".crt", ".key"))
    key.rename(key.with_suffix(".gone"))  # nothing can read it from the disk any more
    for pid in before:
        os.kill(pid, 9)
    wait_for(lambda: len(workers()) == len(before) and not set(workers()) & set(before), 30,
             what="replacement workers")
    assert wait_for(tls_logins, 30, what="TLS from the replacement workers")
    assert "cannot load TLS" not in tls_srv.log()
