"""POP3 transcripts over real sockets against `mailsift serve` (subprocess): every command,
the state machine, STLS and implicit TLS, response codes, and bad input."""

from __future__ import annotations

import base64
import os
import random
import smtplib
import socket
import ssl
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness.procs import wait_for
from test_pop3_support import (  # noqa: F401 - fixture
    DATA, OTHER, PASSWORD, USER, Pop3Client, Pop3Server, pop3_server,
)

pytestmark = pytest.mark.integration

MESSAGES = sorted(DATA.glob("*.eml"))


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, mailsift_bin: str) -> Iterator[Pop3Server]:
    """A server whose mailbox the read-only tests share (they must QUIT or close cleanly)."""
    srv = Pop3Server(tmp_path_factory.mktemp("pop3") / "srv", mailsift_bin).setup()
    srv.deliver(USER, [p.read_bytes() for p in MESSAGES])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def connect(srv: Pop3Server, implicit: bool = False) -> Pop3Client:
    if implicit:
        return Pop3Client(srv.host, srv.pop3s_port, tls=srv.client_tls())
    return Pop3Client(srv.host, srv.pop3_port)


def logged_in(srv: Pop3Server, implicit: bool = True) -> Pop3Client:
    c = connect(srv, implicit)
    assert c.login().startswith(b"+OK"), "login failed"
    return c


# -- greeting, CAPA, STLS ------------------------------------------------------------------

def test_greeting_and_capabilities_before_and_after_stls(shared_server: Pop3Server) -> None:
    c = connect(shared_server)
    assert c.greeting.startswith(b"+OK")
    assert c.cmd("CAPA") == b"+OK Capability list follows"
    caps = c.multiline()
    for cap in (b"TOP", b"UIDL", b"RESP-CODES", b"PIPELINING", b"STLS", b"USER", b"SASL PLAIN"):
        assert cap in caps, caps
    assert c.cmd("STLS") == b"+OK Begin TLS negotiation"
    c.starttls(shared_server.client_tls())
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")  # type: ignore[attr-defined]
    assert c.cmd("CAPA").startswith(b"+OK")
    caps = c.multiline()
    assert b"STLS" not in caps and b"USER" in caps
    assert c.cmd("STLS").startswith(b"-ERR")  # already on TLS
    assert c.login().startswith(b"+OK maildrop has 5 messages")
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()


def test_implicit_tls_port(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    assert c.greeting.startswith(b"+OK")
    assert c.cmd("CAPA").startswith(b"+OK")
    assert b"STLS" not in c.multiline()
    assert c.cmd("STLS").startswith(b"-ERR")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_plaintext_pipelined_after_stls_is_discarded(shared_server: Pop3Server) -> None:
    """RFC 2595 / CVE-2011-0411: nothing sent in the clear after STLS may be executed."""
    c = connect(shared_server)
    c.send(b"STLS\r\nUSER injected@example.test\r\nCAPA\r\n")
    assert c.line() == b"+OK Begin TLS negotiation"
    assert c.buf == b""
    c.starttls(shared_server.client_tls())
    assert c.cmd("NOOP").startswith(b"-ERR")  # NOOP is a TRANSACTION command: the first reply is ours
    # a PASS now must fail for want of USER: the injected USER was thrown away
    assert c.cmd(f"PASS {PASSWORD}") == b"-ERR USER first"
    c.sock.settimeout(0.5)
    with pytest.raises((socket.timeout, ssl.SSLError)):
        c.sock.recv(100)  # and no reply to the injected CAPA either
    c.close()


# -- the transaction commands ---------------------------------------------------------------

def test_stat_list_uidl_retr_top_sizes_and_dot_stuffing(shared_server: Pop3Server) -> None:
    c = logged_in(shared_server)
    originals = [crlf(p.read_bytes()) for p in MESSAGES]
    sizes = [len(m) for m in originals]
    assert c.cmd("STAT") == f"+OK {len(originals)} {sum(sizes)}".encode()
    assert c.cmd("LIST").startswith(b"+OK")
    assert c.multiline() == [f"{i} {s}".encode() for i, s in enumerate(sizes, 1)]
    assert c.cmd("LIST 2") == f"+OK 2 {sizes[1]}".encode()
    assert c.cmd("LIST 02") == f"+OK 2 {sizes[1]}".encode()
    assert c.cmd("UIDL").startswith(b"+OK")
    uidls = c.multiline()
    assert len({u.split()[1] for u in uidls}) == len(originals)
    for n, line in enumerate(uidls, 1):
        num, uid = line.split()
        assert int(num) == n and 1 <= len(uid) <= 70 and all(0x21 <= b <= 0x7E for b in uid)
        assert c.cmd(f"UIDL {n}") == b"+OK " + line
    for n, original in enumerate(originals, 1):
        assert c.cmd(f"RETR {n}") == f"+OK {sizes[n - 1]} octets".encode()
        body = b"\r\n".join(c.multiline())
        # the received message is the delivered one, CRLF line ends, dots unstuffed
        assert body + b"\r\n" == original or body == original, (n, body[:200])
    dots = MESSAGES.index(DATA / "dots.eml") + 1
    c.send(f"RETR {dots}\r\n".encode())
    assert c.line().startswith(b"+OK")
    raw_lines = []
    while (line := c.line()) != b".":
        raw_lines.append(line)
    assert b".." in raw_lines and b"...." in raw_lines and b"..leading dot" in raw_lines  # stuffed on the wire
    # TOP: headers, blank line, n body lines
    assert c.cmd(f"TOP {dots} 0").startswith(b"+OK")
    top0 = c.multiline()
    assert top0[-1] == b"" and top0[0].startswith(b"From: Dave")
    assert c.cmd(f"TOP {dots} 3").startswith(b"+OK")
    assert c.multiline() == top0 + [b".", b"..", b"..."]
    assert c.cmd("TOP 1 99999").startswith(b"+OK")
    assert b"\r\n".join(c.multiline()) + b"\r\n" == originals[0]
    assert c.cmd("NOOP") == b"+OK"
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()


def test_message_number_errors(shared_server: Pop3Server) -> None:
    c = logged_in(shared_server)
    for cmd in ("RETR 0", "RETR -1", "RETR abc", "RETR", "RETR 1 2", "TOP 1", "TOP 1 x", "TOP 1 -1",
                "LIST 99999999999", "DELE", "STAT 1", "RSET 1"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    assert c.cmd("RETR 99").startswith(b"-ERR no such message")
    assert c.cmd("UIDL 6").startswith(b"-ERR no such message")
    assert c.cmd("STAT").startswith(b"+OK 5 ")  # the session is fine after all that
    assert c.cmd("QUIT").startswith(b"+OK")


def test_commands_in_the_wrong_state(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    for cmd in ("STAT", "LIST", "RETR 1", "DELE 1", "UIDL", "TOP 1 1", "RSET", "NOOP"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    assert c.cmd("PASS x") == b"-ERR USER first"
    assert c.login().startswith(b"+OK")
    for cmd in ("USER x", "PASS y", "AUTH PLAIN", "STLS"):
        assert c.cmd(cmd).startswith(b"-ERR"), cmd
    assert c.cmd("STAT").startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_pipelining_many_commands_in_one_write(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    batch = [f"USER {USER}", f"PASS {PASSWORD}", "STAT"] + [f"LIST {i}" for i in range(1, 6)] * 20 + \
            ["UIDL 1", "RETR 1", "NOOP", "QUIT"]
    c.send(("\r\n".join(batch) + "\r\n").encode())
    assert c.line() == b"+OK send PASS"
    assert c.line().startswith(b"+OK maildrop has 5")
    assert c.line().startswith(b"+OK 5 ")
    for _ in range(20):
        for i in range(1, 6):
            assert c.line().startswith(f"+OK {i} ".encode())
    assert c.line().startswith(b"+OK 1 ")
    assert c.line().startswith(b"+OK")
    c.multiline()
    assert c.line() == b"+OK"
    assert c.line().startswith(b"+OK")
    assert c.closed()


def test_in_use_one_session_per_mailbox(shared_server: Pop3Server) -> None:
    first = logged_in(shared_server)
    second = connect(shared_server, implicit=True)
    assert second.login() == b"-ERR [IN-USE] mailbox is locked by another POP3 session"
    assert second.cmd("STAT").startswith(b"-ERR")  # still not logged in
    # another user is not affected
    third = connect(shared_server, implicit=True)
    assert third.login(OTHER).startswith(b"+OK maildrop has 0 messages")
    assert third.cmd("QUIT").startswith(b"+OK")
    assert first.cmd("QUIT").startswith(b"+OK")
    assert first.closed()
    assert second.login().startswith(b"+OK")
    second.close()  # dropped without QUIT: the lock goes with the connection
    fourth = connect(shared_server, implicit=True)
    wait_for(lambda: fourth.login().startswith(b"+OK"), 10, what="lock released after a dropped connection")
    assert fourth.cmd("QUIT").startswith(b"+OK")


# -- authentication -------------------------------------------------------------------------

def plain(authzid: str, user: str, password: str) -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def test_auth_plain_initial_response_and_continuation(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    assert c.cmd("AUTH").startswith(b"+OK")
    assert c.multiline() == [b"PLAIN"]
    assert c.cmd("AUTH PLAIN " + plain("", USER, PASSWORD)).startswith(b"+OK maildrop")
    assert c.cmd("QUIT").startswith(b"+OK")
    c = connect(shared_server, implicit=True)
    assert c.cmd("AUTH PLAIN") == b"+ "
    assert c.cmd(plain(USER, USER, PASSWORD)).startswith(b"+OK maildrop")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_auth_plain_bad_input(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    assert c.cmd("AUTH CRAM-MD5").startswith(b"-ERR unsupported")
    assert c.cmd("AUTH PLAIN") == b"+ "
    assert c.cmd("*") == b"-ERR authentication cancelled"
    assert c.cmd("AUTH PLAIN") == b"+ "
    assert c.cmd("not base64 at all!") == b"-ERR invalid base64 in PLAIN response"
    assert c.cmd("AUTH PLAIN " + base64.b64encode(b"no nul bytes").decode()) == b"-ERR malformed PLAIN response"
    assert c.cmd("AUTH PLAIN =") .startswith(b"-ERR")
    assert c.cmd("AUTH PLAIN a b").startswith(b"-ERR")
    # the session still works afterwards
    assert c.cmd("AUTH PLAIN " + plain("", USER, PASSWORD)).startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_failed_logins_look_the_same_and_are_throttled(pop3_server: Pop3Server) -> None:
    srv = pop3_server.start()
    replies = []
    c = connect(srv, implicit=True)
    assert c.cmd(f"USER {USER}") == c.cmd("USER nobody@example.test") == b"+OK send PASS"
    for user, password in [(USER, "wrong"), ("nobody@example.test", PASSWORD), (OTHER, "")]:
        c = connect(srv, implicit=True)
        assert c.cmd(f"USER {user}") == b"+OK send PASS"
        replies.append(c.cmd(f"PASS {password}"))
        c.close()
    # a proxy login (authzid of another user) fails the same way
    c = connect(srv, implicit=True)
    replies.append(c.cmd("AUTH PLAIN " + plain(OTHER, USER, PASSWORD)))
    assert set(replies) == {b"-ERR [AUTH] authentication failed"}, replies
    # the throttle (3 free failures per address) now delays the next attempt, even a good one
    c2 = connect(srv, implicit=True)
    t0 = time.monotonic()
    assert c2.login(OTHER).startswith(b"+OK")
    assert time.monotonic() - t0 >= 0.9
    assert c2.cmd("QUIT").startswith(b"+OK")
    # three failures on one connection close it
    c.cmd("USER x@example.test")
    c.cmd("PASS a")
    c.cmd("USER x@example.test")
    assert c.cmd("PASS b") == b"-ERR [AUTH] authentication failed; closing"
    assert c.closed()


def test_path_like_user_names_touch_nothing(pop3_server: Pop3Server) -> None:
    srv = pop3_server.start()
    before = sorted(str(p) for p in srv.workdir.rglob("*"))
    for name in ("../../../../tmp/pop3-escape@example.test", "/tmp/pop3-escape", "alice@../../etc"):
        c = connect(srv, implicit=True)
        assert c.cmd(f"USER {name}") == b"+OK send PASS"
        assert c.cmd(f"PASS {PASSWORD}") == b"-ERR [AUTH] authentication failed"
        c.close()
    assert not Path("/tmp/pop3-escape").exists() and not Path("/tmp/pop3-escape@example.test").exists()
    after = sorted(str(p) for p in srv.workdir.rglob("*") if not p.name.startswith("serve."))
    assert [p for p in after if p not in before] == [], "no file or directory was created"


def non_loopback_address() -> str | None:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent; this picks the outgoing address
            addr = s.getsockname()[0]
    except OSError:
        return None
    return None if addr.startswith("127.") else addr


def test_plaintext_login_refused_before_tls_off_loopback(tmp_path: Path, mailsift_bin: str) -> None:
    """The server listens on this host's non-loopback address for this test only."""
    addr = non_loopback_address()
    if addr is None:
        pytest.skip("no non-loopback IPv4 address on this host")
    srv = Pop3Server(tmp_path / "srv", mailsift_bin, host=addr).setup()
    srv.start()
    try:
        c = Pop3Client(addr, srv.pop3_port)
        assert c.cmd("CAPA").startswith(b"+OK")
        caps = c.multiline()
        assert b"STLS" in caps and b"USER" not in caps and b"SASL PLAIN" not in caps
        assert c.cmd(f"USER {USER}").startswith(b"-ERR [AUTH] plaintext authentication disallowed")
        assert c.cmd(f"PASS {PASSWORD}").startswith(b"-ERR [AUTH] plaintext")
        assert c.cmd("AUTH PLAIN " + plain("", USER, PASSWORD)).startswith(b"-ERR [AUTH] plaintext")
        assert c.cmd("STLS").startswith(b"+OK")
        c.starttls(srv.client_tls())
        assert c.login().startswith(b"+OK maildrop")
        assert c.cmd("QUIT").startswith(b"+OK")
        # implicit TLS off loopback is fine
        c = Pop3Client(addr, srv.pop3s_port, tls=srv.client_tls())
        assert c.login().startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    finally:
        srv.stop()
    # allow_plaintext_anywhere = true lifts the rule
    srv2 = Pop3Server(tmp_path / "srv2", mailsift_bin, host=addr,
                      extra={"allow_plaintext_anywhere": "true"}).setup()
    srv2.start()
    try:
        c = Pop3Client(addr, srv2.pop3_port)
        assert c.login().startswith(b"+OK maildrop")
        assert c.cmd("QUIT").startswith(b"+OK")
    finally:
        srv2.stop()


# -- DELE, RSET, QUIT and the UPDATE state --------------------------------------------------

def test_dele_rset_quit_and_dropped_connections(pop3_server: Pop3Server) -> None:
    srv = pop3_server
    srv.deliver(USER, [p.read_bytes() for p in MESSAGES])
    srv.start()
    c = logged_in(srv)
    assert c.cmd("DELE 1") == b"+OK message 1 deleted"
    assert c.cmd("DELE 1") == b"-ERR message 1 already deleted"
    assert c.cmd("RETR 1") == b"-ERR message 1 already deleted"
    assert c.cmd("LIST 1").startswith(b"-ERR")
    assert c.cmd("STAT").startswith(b"+OK 4 ")
    assert c.cmd("LIST").startswith(b"+OK 4 messages")
    assert [line.split()[0] for line in c.multiline()] == [b"2", b"3", b"4", b"5"]
    assert c.cmd("RSET").startswith(b"+OK maildrop has 5 messages")
    assert c.cmd("STAT").startswith(b"+OK 5 ")
    assert c.cmd("DELE 2") == b"+OK message 2 deleted"
    c.close()  # dropped without QUIT: nothing is deleted
    assert len(srv.inbox_files()) == 5

    c = wait_for(lambda: logged_in(srv), 10, what="login after a dropped session")
    assert c.cmd("UIDL").startswith(b"+OK")
    uidls = [line.split()[1] for line in c.multiline()]
    assert c.cmd("DELE 2").startswith(b"+OK")
    assert c.cmd("DELE 4").startswith(b"+OK")
    assert c.cmd("QUIT") == b"+OK mailsift POP3 server signing off (2 deleted, 3 left)"
    assert c.closed()
    assert len(srv.inbox_files()) == 3

    c = logged_in(srv)
    assert c.cmd("UIDL").startswith(b"+OK")
    assert [line.split()[1] for line in c.multiline()] == [uidls[0], uidls[2], uidls[4]]
    assert c.cmd("QUIT").startswith(b"+OK")


def test_uidl_stable_across_restarts_and_index_rebuild(pop3_server: Pop3Server) -> None:
    srv = pop3_server
    srv.deliver(USER, [p.read_bytes() for p in MESSAGES])
    srv.start()

    def uidls() -> list[bytes]:
        c = logged_in(srv)
        assert c.cmd("UIDL").startswith(b"+OK")
        out = c.multiline()
        assert c.cmd("QUIT").startswith(b"+OK")
        assert c.closed()
        return out

    before = uidls()
    assert uidls() == before          # across sessions
    srv.stop()
    srv.start()
    assert uidls() == before          # across restarts
    srv.stop()
    index = [p for p in (srv.mail_root / "example.test" / "alice").iterdir() if p.name.startswith("mailsift-index")]
    assert index, "expected the store's index beside the Maildir"
    for p in index:
        p.unlink()
    srv.start()
    assert uidls() == before          # even after the index was lost and rebuilt


def test_mail_arriving_over_lmtp_during_a_session(tmp_path: Path, mailsift_bin: str) -> None:
    """A session works on the snapshot taken at login; mail delivered over LMTP meanwhile is
    there at the next login, after the old messages, whose UIDLs do not change."""
    srv = Pop3Server(tmp_path / "srv", mailsift_bin, lmtp_port=-1).setup()
    srv.deliver(USER, [p.read_bytes() for p in MESSAGES[:2]])
    srv.start()
    try:
        c = logged_in(srv)
        assert c.cmd("UIDL").startswith(b"+OK")
        before = c.multiline()
        new = [f"From: x@example.org\r\nSubject: lmtp {i}\r\nMessage-ID: <lmtp.{i}@example.org>\r\n\r\n"
               f".body {i}\r\n".encode() for i in range(3)]  # smtplib stuffs the dot; LMTP unstuffs it
        with smtplib.LMTP(srv.host, srv.lmtp_port, timeout=30) as lmtp:
            for m in new:
                assert lmtp.sendmail("x@example.org", [USER], m) == {}
        assert c.cmd("STAT").startswith(b"+OK 2 ")  # the snapshot
        assert c.cmd("QUIT").startswith(b"+OK")
        assert c.closed()
        c = logged_in(srv)
        assert c.cmd("UIDL").startswith(b"+OK")
        after = c.multiline()
        assert after[:2] == before and len(after) == 5
        assert c.cmd("RETR 5").startswith(b"+OK")
        body = b"\r\n".join(c.multiline())
        assert b"Subject: lmtp 2\r\n" in body and body.endswith(b"\r\n\r\n.body 2"), body
        assert c.cmd("QUIT").startswith(b"+OK")
    finally:
        srv.stop()


def test_store_failure_is_a_temporary_error(pop3_server: Pop3Server) -> None:
    """A mailbox the store cannot open answers -ERR [SYS/TEMP], and the server carries on."""
    srv = pop3_server
    box = srv.mail_root / "example.test" / "alice"
    (box / "cur").rename(box / "cur.away")
    (box / "cur").write_bytes(b"not a directory")
    srv.start()
    c = connect(srv, implicit=True)
    assert c.login().startswith(b"-ERR [SYS/TEMP]")
    c.close()
    c = connect(srv, implicit=True)
    assert c.login(OTHER).startswith(b"+OK")  # others are unaffected, the lock was released
    assert c.cmd("QUIT").startswith(b"+OK")
    (box / "cur").unlink()
    (box / "cur.away").rename(box / "cur")
    c = wait_for(lambda: logged_in(srv), 10, what="login once the mailbox is repaired")
    assert c.cmd("QUIT").startswith(b"+OK")


# -- bad input -----------------------------------------------------------------------------

def test_overlong_lines_nul_bytes_and_garbage(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    assert c.cmd(b"A" * 5000) == b"-ERR line too long"
    assert c.cmd(b"USER " + b"x" * 2000) == b"-ERR line too long"
    assert c.cmd(b"US\0ER x") == b"-ERR NUL byte in command"
    assert c.cmd(b"\xff\xfe\xfd") == b"-ERR unknown command"
    assert c.cmd(b"") == b"-ERR empty command"
    assert c.cmd(b"USER \xc3\x28") == b"-ERR invalid UTF-8 in command"
    assert c.cmd(b"HELO there") == b"-ERR unknown command"
    # bare LF line ends are accepted
    c.send(b"CAPA\n")
    assert c.line().startswith(b"+OK")
    c.multiline()
    # a huge line arriving in pieces with no newline for a long time is discarded as it comes
    for _ in range(40):
        c.send(b"B" * 100_000)
    assert c.cmd(b"") == b"-ERR line too long"
    assert c.login().startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_garbage_instead_of_a_tls_handshake(shared_server: Pop3Server) -> None:
    c = connect(shared_server)
    assert c.cmd("STLS") == b"+OK Begin TLS negotiation"
    c.send(b"USER alice@example.test\r\nthis is not a ClientHello\r\n" * 10)
    assert c.closed(timeout=20)
    c.close()
    c = logged_in(shared_server)  # the server carries on
    assert c.cmd("QUIT").startswith(b"+OK")


def test_too_many_bad_commands_close_the_connection(shared_server: Pop3Server) -> None:
    c = connect(shared_server, implicit=True)
    replies = [c.cmd("XYZZY") for _ in range(20)]
    assert all(r.startswith(b"-ERR") for r in replies)
    assert replies[-1].endswith(b"too many bad commands, closing")
    assert c.closed()


def test_random_garbage_never_crashes_the_server(shared_server: Pop3Server) -> None:
    rng = random.Random(4)
    words = [b"USER", b"PASS", b"STAT", b"LIST", b"RETR", b"TOP", b"DELE", b"STLS", b"AUTH", b"UIDL", b"\0",
             b" ", b"\r", b"\n", b"\r\n", b"\xff", b"9" * 12, b"-1", b"PLAIN", b"=", b"*", b".", b"CAPA"]
    for _ in range(30):
        s = socket.create_connection((shared_server.host, shared_server.pop3_port), timeout=10)
        s.recv(100)
        blob = b"".join(rng.choice(words) if rng.random() < 0.7 else os.urandom(rng.randint(1, 50))
                        for _ in range(rng.randint(1, 60)))
        try:
            s.sendall(blob + b"\r\nQUIT\r\n")
            s.settimeout(10)
            while s.recv(65536):
                pass
        except (ConnectionError, socket.timeout):
            pass
        s.close()
    assert shared_server.daemon is not None and shared_server.daemon.alive()
    c = logged_in(shared_server)
    assert c.cmd("STAT").startswith(b"+OK 5 ")
    assert c.cmd("QUIT").startswith(b"+OK")
    log = shared_server.log()
    assert "Traceback" not in log, log[-3000:]
