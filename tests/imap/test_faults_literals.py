"""Issue 14, found in review: before login a client could announce a 64 MiB literal (`a LOGIN
{67108864}` got `+ Ready`; a 16 MiB one raised the server's peak memory by 65 MB), and the
LITERAL+ bound `max_nonsync_literal` was defined but unused. Now: before login a literal holds at
most `max_prelogin_literal` octets and a command `max_prelogin_command`; a bigger synchronising
literal gets `BAD [TOOBIG]` without a continuation, a bigger non-synchronising one ends the
connection (its octets are already on their way). After login a `{n+}` above
`max_nonsync_literal` answers `BAD [TOOBIG]` (its octets are swallowed unread), while a
synchronising literal may still be as big as `max_literal`. And the pre-login deadline
(`[store] login_timeout`, not restarted by traffic) also cuts a client trickling a literal."""

from __future__ import annotations

import socket
import time

import pytest

from imap.test_caches import msg, ok
from imap.wire import Wire
from mailsift.protocols.imap.parser import Limits

USER, PW = "quinn@example.test", "quinn-pw"
LIMITS = Limits()


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, extra={"login_timeout": 3}, prefix="mailsift-imaplit-")


def closed(w: Wire) -> bool:
    try:
        while True:
            w.read_response()
    except (ConnectionError, OSError):
        return True


def test_a_big_literal_before_login_gets_no_continuation(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.send(b"a LOGIN {67108864}\r\n")
    assert w.read_response() == b"a BAD [TOOBIG] Literal too big"
    w.send(b"b LOGIN {%d}\r\n" % (LIMITS.max_prelogin_literal + 1))
    assert w.read_response() == b"b BAD [TOOBIG] Literal too big"
    # small literals work as before, on the same connection
    w.send(b"c LOGIN {%d}\r\n" % len(USER))
    assert w.read_line().startswith(b"+ ")
    w.send(USER.encode() + b" {%d}\r\n" % len(PW))
    assert w.read_line().startswith(b"+ ")
    w.send(PW.encode() + b"\r\n")
    assert ok(w.read_response())
    w.close()


def test_a_big_non_synchronising_literal_before_login_ends_the_connection(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.send(b"a LOGIN {67108864+}\r\n" + b"x" * 65536)
    assert w.read_response() == b"* BYE Literal too big"
    assert closed(w)
    w.close()


def test_many_small_literals_before_login_are_bounded_as_one_command(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    chunk = LIMITS.max_prelogin_literal
    w.send(b"a LOGIN {%d}\r\n" % chunk)
    sent = 0
    while True:
        reply = w.read_response()
        if not reply.startswith(b"+ "):
            break
        sent += chunk
        w.send(b"x" * chunk + b" {%d}\r\n" % chunk)
    assert reply == b"a BAD [TOOBIG] Literal too big", reply
    assert sent <= LIMITS.max_prelogin_command
    _, done = w.command("NOOP")
    assert ok(done)
    w.close()


def test_after_login_the_literal_plus_bound_holds_and_synchronising_literals_may_be_bigger(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    big = msg("big", "y" * (LIMITS.max_nonsync_literal + 10) + "\r\n")
    w.send(b"a APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    assert w.read_response() == b"a BAD [TOOBIG] Literal too big"
    untagged, done = w.command("STATUS INBOX (MESSAGES)")
    assert ok(done) and untagged[0].endswith(b"(MESSAGES 0)"), untagged
    w.send(b"b APPEND INBOX {%d}\r\n" % len(big))
    assert w.read_line().startswith(b"+ ")
    w.send(big + b"\r\n")
    assert ok(w.read_response())
    small = msg("small")
    _, done = w.command(b"APPEND INBOX {%d+}\r\n" % len(small) + small)
    assert ok(done), done
    w.close()


def test_the_login_deadline_cuts_a_client_trickling_a_literal(srv) -> None:
    s = socket.create_connection((srv.host, srv.imap_port), timeout=10)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK")
    s.sendall(b"a LOGIN {%d}\r\n" % LIMITS.max_prelogin_literal)
    assert f.readline().startswith(b"+ ")
    start = time.monotonic()
    s.settimeout(0.3)
    got = b""
    while time.monotonic() - start < 20:
        try:
            s.send(b"z")  # each byte would restart a per-read timer
            chunk = s.recv(512)
        except TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        got += chunk
    elapsed = time.monotonic() - start
    s.close()
    assert 2.0 < elapsed < 10, (elapsed, got)
