"""QUOTA (RFC 9208) end to end: a real `mailsift serve` with `[store] quota_mb = 1` next to a private
Dovecot 2.3 with its quota plugin at the same 1 MiB (count backend, virtual sizes): the same
APPEND, MULTIAPPEND, COPY, MOVE and EXPUNGE sequence gets the same answers and the same
GETQUOTA figures. Then what Dovecot does not share: LMTP refuses with a temporary 452 4.2.2
(never 5xx) and delivers again once there is room; STATUS DELETED and DELETED-STORAGE; a limit
set with `mailsift user set --quota-mb` on a running server."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from imap import dovecot_pair
from imap.conftest import ImapServer
from imap.wire import Wire, parse_values
from mailsift.protocols.imap.parser import ParseError, parse_command

pytestmark = pytest.mark.integration

USER, PW = "quota@example.test", "quota-pw"
FREE, FREE_PW = "free@example.test", "free-pw"
LATE, LATE_PW = "late@example.test", "late-pw"   # no command of this user runs before its limit is set
DOVECOT_QUOTA = """
mail_plugins = $mail_plugins quota
protocol imap {
  mail_plugins = $mail_plugins imap_quota
}
plugin {
  quota = count:User quota
  quota_vsizes = yes
  quota_rule = *:storage=1M
}
"""


def big(i: int, size: int = 300_000) -> bytes:
    head = f"Subject: big {i}\r\n\r\n".encode()
    return head + (b"z" * 998 + b"\r\n") * ((size - len(head)) // 1000)


def test_quota_grammar() -> None:
    assert parse_command(b'a GETQUOTA "User quota"').args == {"root": "User quota"}
    assert parse_command(b"a GETQUOTAROOT inbox").args == {"mailbox": "INBOX"}
    assert parse_command(b'a SETQUOTA "" (STORAGE 512)').args == {"root": ""}
    assert parse_command(b"a STATUS x (DELETED DELETED-STORAGE)").args["items"] == ("DELETED", "DELETED-STORAGE")
    for bad in (b"a GETQUOTA", b"a GETQUOTAROOT", b'a SETQUOTA "" (STORAGE)', b'a SETQUOTA "" STORAGE'):
        with pytest.raises(ParseError):
            parse_command(bad)


@pytest.fixture(scope="module")
def pair(mailsift_bin: str):
    with dovecot_pair.servers(mailsift_bin, {USER: PW, FREE: FREE_PW, LATE: LATE_PW}, "imap-quota-",
                              {"quota_mb": 1}, dovecot_users={USER: PW}, dovecot_conf=DOVECOT_QUOTA) as peers, \
            dovecot_pair.sessions(peers, USER, PW) as (ours, theirs):
        yield peers[0], ours, theirs


def answer(w: Wire, command: bytes | str) -> tuple[list[bytes], bytes]:
    """The QUOTA and QUOTAROOT responses and the tagged status, with [OVERQUOTA] when given
    (other response codes and texts are free)."""
    untagged, done = w.command(command)
    m = re.match(rb"^\S+ (OK|NO|BAD)( \[OVERQUOTA\])?", done)
    assert m, done
    return [u for u in untagged if u.startswith((b"* QUOTA", b"* STATUS"))], m.group(0).split(b" ", 1)[1]


def test_capabilities(pair) -> None:
    _, ours, _ = pair
    caps, _ = ours.command("CAPABILITY")
    assert b" QUOTA " in caps[0] + b" " and b" QUOTA=RES-STORAGE" in caps[0]


def test_quota_sequence_agrees_with_dovecot(pair) -> None:
    _, ours, theirs = pair
    steps: list[bytes | str] = ["GETQUOTAROOT INBOX", 'GETQUOTA "User quota"', 'GETQUOTA "nope"',
                                'SETQUOTA "User quota" (STORAGE 100)', "CREATE Other"]
    for i in range(4):   # the fourth 300 KB message does not fit in 1 MiB
        data = big(i)
        steps += [b"APPEND INBOX {%d+}\r\n" % len(data) + data, 'GETQUOTA "User quota"']
    small = b"Subject: small\r\n\r\nfits\r\n"
    steps += [
        b"APPEND INBOX {%d+}\r\n" % len(small) + small,                   # still room for a small one
        b"APPEND Other {%d+}\r\n" % len(small) + small + b" {%d+}\r\n" % len(big(9)) + big(9),  # not both
        "STATUS Other (MESSAGES)", "SELECT INBOX", "COPY 1 Other", "MOVE 1 Other", 'GETQUOTA "User quota"',
        "GETQUOTAROOT Other", "STORE 1 +FLAGS.SILENT (\\Deleted)", "EXPUNGE", 'GETQUOTA "User quota"',
        b"APPEND INBOX {%d+}\r\n" % len(big(5)) + big(5), "GETQUOTAROOT INBOX", "UNSELECT",
    ]
    diffs = []
    for step in steps:
        a, b = answer(ours, step), answer(theirs, step)
        if a != b:
            diffs.append(f"{str(step)[:60]}\n  dovecot: {b}\n  ours:    {a}")
    assert not diffs, "\n".join(diffs)
    # and the figures are the expected ones, not just equal
    untagged, _ = ours.command('GETQUOTA "User quota"')
    kept = 3 * len(big(0)) + len(small)   # big 2 and 5 in INBOX, big 0 moved to Other, the small one
    assert untagged == [b'* QUOTA "User quota" (STORAGE %d 1024)' % -(-kept // 1024)], untagged


def lmtp(srv: ImapServer, rcpts: list[str], data: bytes) -> list[bytes]:
    """One LMTP transaction: the reply to each RCPT, then one reply per accepted recipient."""
    with socket.create_connection((srv.host, srv.lmtp_port), timeout=30) as s:
        f = s.makefile("rb")

        def reply() -> bytes:
            line = f.readline()
            while line[3:4] == b"-":
                line = f.readline()
            return line.rstrip()

        reply()
        s.sendall(b"LHLO test\r\n")
        reply()
        s.sendall(b"MAIL FROM:<s@example.test>\r\n")
        assert reply().startswith(b"250")
        out = []
        for r in rcpts:
            s.sendall(f"RCPT TO:<{r}>\r\n".encode())
            out.append(reply())
        s.sendall(b"DATA\r\n")
        assert reply().startswith(b"354")
        s.sendall(data.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        out += [reply() for _ in rcpts]
        s.sendall(b"QUIT\r\n")
        return out


def test_lmtp_over_quota_is_a_temporary_failure(pair) -> None:
    srv, ours, _ = pair
    untagged, _ = ours.command('GETQUOTA "User quota"')
    used = parse_values(untagged[0][len(b"* QUOTA "):])[1][1]
    room = (1024 - used) * 1024
    data = big(7, room + 5000)
    replies = lmtp(srv, [USER, FREE], data)
    assert all(r.startswith(b"250") for r in replies[:2]), replies
    assert replies[2].startswith(b"452 4.2.2 ") and replies[3].startswith(b"250 "), replies
    ours.command("SELECT INBOX")
    ours.command("STORE 1:* +FLAGS.SILENT (\\Deleted)")
    untagged, _ = ours.command("STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)")
    items = parse_values(untagged[0][len(b"* STATUS "):])[1]
    status = dict(zip(items[::2], items[1::2]))
    assert status["DELETED"] == status["MESSAGES"] >= 2 and status["DELETED-STORAGE"] >= 580
    ours.command("EXPUNGE")
    ours.command("UNSELECT")
    untagged, _ = ours.command("STATUS INBOX (DELETED DELETED-STORAGE)")
    assert untagged == [b"* STATUS INBOX (DELETED 0 DELETED-STORAGE 0)"]
    assert lmtp(srv, [USER], data)[1].startswith(b"250 ")   # Postfix's retry now gets through


def test_a_limit_set_with_mailsift_user_reaches_the_running_server(pair, mailsift_bin: str) -> None:
    srv, _, _ = pair
    done = subprocess.run([mailsift_bin, "user", "--users", str(srv.users_db), "set", LATE, "--quota-mb", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    w = Wire(srv.host, srv.imap_port)
    w.login(LATE, LATE_PW)
    untagged, done = w.command("GETQUOTAROOT INBOX")
    assert untagged == [b"* QUOTAROOT INBOX"] and b" OK " in done          # no limit, no root
    _, done = w.command('GETQUOTA "User quota"')
    assert b" NO [NONEXISTENT]" in done
    for i in range(4):                                                        # past the 1 MiB default
        data = big(i)
        _, done = w.command(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        assert b" OK " in done, done
    w.close()
