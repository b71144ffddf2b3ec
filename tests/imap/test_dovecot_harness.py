"""The private Dovecot harness (tests/harness/dovecot.py) others use for benchmarks: IMAP, POP3
and LMTP answer on loopback, LMTP delivers into the user's Maildir, stop() ends every process."""

import os
import smtplib
import socket

import pytest

from harness.dovecot import DovecotInstance

pytestmark = pytest.mark.integration


def test_lmtp_delivery_is_visible_over_pop3_and_imap(tmp_path) -> None:
    dc = DovecotInstance(tmp_path / "dc", {"bob@example.test": "pw"})
    dc.start()
    try:
        master = dc.daemon.pid
        lmtp = smtplib.LMTP(dc.host, dc.lmtp_port)
        lmtp.sendmail("a@example.test", ["bob@example.test"], b"Subject: via lmtp\r\n\r\nhello\r\n")
        lmtp.quit()
        new = dc.maildir("bob@example.test") / "new"
        assert len(os.listdir(new)) == 1
        with socket.create_connection((dc.host, dc.pop3_port)) as s:
            f = s.makefile("rb")
            assert f.readline().startswith(b"+OK")
            s.sendall(b"USER bob@example.test\r\n"); assert f.readline().startswith(b"+OK")
            s.sendall(b"PASS pw\r\n"); assert f.readline().startswith(b"+OK")
            s.sendall(b"STAT\r\n"); assert f.readline().startswith(b"+OK 1 ")
            s.sendall(b"QUIT\r\n")
        assert dc.append("bob@example.test", "Junk", b"Subject: appended\r\n\r\nx\r\n", "\\Seen") == 1
    finally:
        dc.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(master, 0)
