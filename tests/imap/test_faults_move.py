"""Issue 14, conformance: `MOVE` into the selected mailbox answered `NO [CANNOT] Source and
destination are the same mailbox`. RFC 6851 allows it, and Dovecot does it: the message gets a new
UID (`COPYUID`), the old one is expunged; flags and bytes stay."""

from __future__ import annotations

import re

import pytest

from imap.test_caches import append, msg, ok
from imap.wire import Wire, fetch_items

USER, PW = "sam@example.test", "sam-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imapmove-")


def test_move_into_the_selected_mailbox_gives_new_uids(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    first, second = msg("first move"), msg("second move")
    append(w, "INBOX", first, "\\Flagged $Work")
    append(w, "INBOX", second)
    untagged, done = w.command("SELECT INBOX (CONDSTORE)")
    assert ok(done)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", b"".join(untagged)).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"".join(untagged)).group(1))
    other = Wire(srv.host, srv.imap_port)
    other.login(USER, PW)
    other.command("SELECT INBOX")

    untagged, done = w.command("MOVE 1 INBOX")
    assert ok(done), (untagged, done)
    assert untagged[0] == b"* OK [COPYUID %d 1 3] Moved" % uidvalidity, untagged
    assert b"* 1 EXPUNGE" in untagged and b"* 2 EXISTS" in untagged, untagged
    untagged, done = w.command("FETCH 1:* (UID FLAGS BODY.PEEK[])")
    items = [fetch_items(u) for u in untagged]
    assert [i["UID"] for i in items] == [2, 3]
    assert items[1]["BODY[]"] == first and {"\\Flagged", "$Work"} <= set(items[1]["FLAGS"])
    assert items[0]["BODY[]"] == second

    untagged, done = w.command("UID MOVE 2 INBOX")
    assert ok(done) and untagged[0] == b"* OK [COPYUID %d 2 4] Moved" % uidvalidity, untagged
    untagged, done = w.command("STATUS INBOX (MESSAGES UIDNEXT HIGHESTMODSEQ)")
    m = re.search(rb"MESSAGES (\d+) UIDNEXT (\d+) HIGHESTMODSEQ (\d+)", untagged[0])
    assert (int(m.group(1)), int(m.group(2))) == (2, 5) and int(m.group(3)) > modseq, untagged

    # another session of the folder hears both expunges and both new messages
    untagged, done = other.command("NOOP")
    assert ok(done)
    assert untagged.count(b"* 1 EXPUNGE") == 2 and any(u.endswith(b" EXISTS") for u in untagged), untagged
    untagged, _ = other.command("UID FETCH 1:* (UID)")
    assert [fetch_items(u)["UID"] for u in untagged] == [3, 4]
    home = srv.mail_root / "example.test" / "sam"  # one file per message, none left behind
    assert len(list((home / "cur").iterdir())) + len(list((home / "new").iterdir())) == 2
    w.close()
    other.close()
