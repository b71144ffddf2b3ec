"""Interoperability: Dovecot (Debian's dovecot-imapd, a private instance) reads the Maildir++
that mailsift's store writes, and mailsift picks up what Dovecot writes into it."""

from __future__ import annotations

import imaplib
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from harness.dovecot import DovecotInstance
from mailsift.store.api import INBOX, Store

pytestmark = pytest.mark.integration

USER = "alice@example.test"


@pytest.fixture
def shared_root():
    root = Path(tempfile.mkdtemp(prefix="mailsift-dovecot-mail-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_dovecot_reads_our_maildir_and_we_read_its_changes(shared_root: Path, tmp_path: Path) -> None:
    store = Store(shared_root)
    box = store.mailbox(USER)
    for i in range(3):
        box.deliver(b"From: a@remote.test\r\nSubject: msg %d\r\n\r\nbody %d\r\n" % (i, i))
    box.store_flags(INBOX, [1], {"\\Seen", "\\Flagged"})
    box.store_flags(INBOX, [2], {"\\Answered"})
    box.move(INBOX, [3], "Junk")
    box.create_folder("Entwürfe")
    store.close()

    dc = DovecotInstance(tmp_path / "dc", users={USER: "pw"}, mail_root=shared_root, pop3=False, lmtp=False)
    dc.start()
    try:
        imap = imaplib.IMAP4(dc.host, dc.imap_port)
        imap.login(USER, "pw")
        typ, listing = imap.list()
        names = {re.search(rb'"\." "?([^"]*)"?$', ln).group(1).decode() for ln in listing}
        assert {"INBOX", "Junk", "Sent", "Drafts", "Trash", "Quarantine", "Entw&APw-rfe"} <= names, listing
        typ, data = imap.select("INBOX")
        assert int(data[0]) == 2
        typ, data = imap.fetch("1:*", "(FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        text = b" ".join(x[0] if isinstance(x, tuple) else x for x in data) + b"".join(
            x[1] for x in data if isinstance(x, tuple))
        flags = {int(m.group(1)): set(m.group(2).decode().split()) - {"\\Recent"}
                 for m in re.finditer(rb"(\d+) \(FLAGS \(([^)]*)\)", text)}
        assert flags == {1: {"\\Seen", "\\Flagged"}, 2: {"\\Answered"}}, text
        sizes = [int(x) for x in re.findall(rb"RFC822.SIZE (\d+)", text)]
        assert sizes == [len(b"From: a@remote.test\r\nSubject: msg %d\r\n\r\nbody %d\r\n" % (i, i)) for i in (0, 1)]
        assert b"Subject: msg 0" in text and b"Subject: msg 1" in text
        typ, data = imap.select("Junk")
        assert int(data[0]) == 1
        # Dovecot changes things: a flag, an appended message with a flag
        imap.select("INBOX")
        imap.store("2", "+FLAGS", "(\\Seen)")
        imap.append("INBOX", "(\\Flagged)", None, b"Subject: from dovecot\r\n\r\nhello\r\n")
        imap.logout()
    finally:
        dc.stop()

    store = Store(shared_root)
    box = store.mailbox(USER)
    infos = box.list(INBOX)
    assert [m.uid for m in infos] == [1, 2, 4]  # 3 went to Junk and is never reused
    assert infos[1].flags == {"\\Answered", "\\Seen"}
    assert infos[2].flags == {"\\Flagged"}
    data = box.read(INBOX, 4)
    assert data == b"Subject: from dovecot\r\n\r\nhello\r\n" and infos[2].size == len(data)
    store.close()
