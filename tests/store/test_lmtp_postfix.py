"""Through a real Postfix: SMTP in, Postfix's lmtp(8) client out to `mailsift serve`."""

from __future__ import annotations

import re
import shlex
import shutil
import smtplib
import subprocess

import pytest

from harness.postfix import PostfixInstance, make_workdir, wait_queue_empty
from harness.procs import wait_for
from mailsift.store.api import INBOX, Store

pytestmark = pytest.mark.integration

USERS = {"alice@example.test": "pw-a", "bob@example.test": "pw-b"}


def postfix_main(srv) -> dict[str, str]:
    """Exactly the lines `mailsift postfix-config --part store` prints for this server's config."""
    out = subprocess.run([srv.bin, "postfix-config", "--part", "store", "--config", str(srv.config)],
                         capture_output=True, text=True, check=True).stdout
    main = {}
    for line in out.splitlines():
        if line.strip() and not line.startswith("#"):
            words = shlex.split(line)  # postconf -e 'name = value'
            assert words[:2] == ["postconf", "-e"], line
            key, _, value = words[2].partition(" = ")
            main[key.strip()] = value.strip()
    assert main["virtual_transport"].startswith("lmtp:")
    assert main["virtual_mailbox_maps"].startswith("proxy:socketmap:")
    return main


@pytest.fixture(params=["unix", "tcp"])
def setup(request, store_server):
    srv = store_server(users=USERS, lmtp=request.param)
    wd = make_workdir("mailsift-pf-")
    pf = PostfixInstance(wd, main=postfix_main(srv))
    try:
        pf.start()
        yield srv, pf
    finally:
        pf.stop()
        shutil.rmtree(wd, ignore_errors=True)


def inbox(srv, user: str, folder: str = INBOX) -> list[bytes]:
    box = Store(srv.mail_root).mailbox(user)
    return [box.read(folder, m.uid) for m in box.list(folder)]


def wait_count(srv, user: str, folder: str, n: int, pf: PostfixInstance) -> list[bytes]:
    try:
        wait_for(lambda: len(inbox(srv, user, folder)) >= n, 60, what=f"{n} in {user}/{folder}")
    except TimeoutError:
        raise AssertionError(pf.log_text()[-3000:] + srv.log()[-3000:])
    return inbox(srv, user, folder)


def test_two_users_one_transaction_per_recipient_replies(setup) -> None:
    srv, pf = setup
    refused = pf.send("sender@remote.test", ["alice@example.test", "bob@example.test"],
                      b"From: sender@remote.test\r\nSubject: to both\r\nMessage-ID: <both@remote.test>\r\n\r\nhi\r\n")
    assert refused == {}
    [a] = wait_count(srv, "alice@example.test", INBOX, 1, pf)
    [b] = wait_count(srv, "bob@example.test", INBOX, 1, pf)
    for m, rcpt in ((a, b"alice@example.test"), (b, b"bob@example.test")):
        assert b"Message-ID: <both@remote.test>" in m and m.endswith(b"\r\nhi\r\n")
        assert b"Delivered-To: " + rcpt in m
    wait_queue_empty(pf)
    log = pf.log_text()
    sent = re.findall(r" ([0-9A-F]+): to=<(\w+)@example.test>.*relay=[^ ]+, .*status=sent \((250 2\.0\.0 <\w+@example.test>"
                      r" delivered to INBOX uid \d+)\)", log)
    assert {s[1] for s in sent} == {"alice", "bob"}, log[-3000:]
    assert len({s[0] for s in sent}) == 1  # same queue file
    assert "delivered" in srv.log() and "to 2 recipients" in srv.log()  # one LMTP transaction, two replies


def test_unknown_user_is_refused_during_smtp(setup) -> None:
    srv, pf = setup
    with smtplib.SMTP(pf.host, pf.smtp_port, timeout=60) as smtp:
        smtp.ehlo("client.test")
        assert smtp.mail("sender@remote.test")[0] == 250
        code, text = smtp.rcpt("nobody@example.test")
        assert code == 550 and b"5.1.1" in text, text
        code, text = smtp.rcpt("../../etc/passwd@example.test")
        assert 500 <= code < 600
        assert smtp.rcpt("alice+whatever@example.test")[0] == 250
        code, text = smtp.rcpt("alice@other.test")  # not our domain, no relaying
        assert code >= 500
        smtp.rset()
    assert not any("nobody" in line and "status=bounced" in line for line in pf.log_text().splitlines())


def test_spam_and_infected_land_in_junk_and_quarantine(setup) -> None:
    srv, pf = setup
    pf.send("s@remote.test", ["alice@example.test"],
            b"Subject: cheap pills\r\nX-Spam-Flag: YES\r\nX-Spam-Score: 9.1\r\n\r\nbuy now\r\n")
    pf.send("s@remote.test", ["alice@example.test"],
            b"Subject: invoice\r\nX-Virus-Status: Infected (Eicar-Test-Signature)\r\n\r\nX5O!P%@AP\r\n")
    pf.send("s@remote.test", ["alice+Sent@example.test"], b"Subject: not filed by detail\r\n\r\nx\r\n")
    pf.send("s@remote.test", ["alice@example.test"], b"Subject: ham\r\nX-Spam-Flag: NO\r\n\r\nhello\r\n")
    [junk] = wait_count(srv, "alice@example.test", "Junk", 1, pf)
    [quar] = wait_count(srv, "alice@example.test", "Quarantine", 1, pf)
    inbox_msgs = wait_count(srv, "alice@example.test", INBOX, 2, pf)  # a detail never files into Sent
    assert inbox(srv, "alice@example.test", "Sent") == []
    assert b"cheap pills" in junk and b"invoice" in quar
    assert sorted(b"not filed by detail" in m for m in inbox_msgs) == [False, True]
    assert any(b"Subject: ham" in m for m in inbox_msgs)
