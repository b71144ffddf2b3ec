"""SQL statements per store call of the IMAP session cycle (perf, docs/store.md "Durability and
the performance shortcuts"): each call reads the folder's row once under its lock hold, commits
in one transaction and switches the connection's `synchronous` setting only when a transaction
wants the other one. Counted with SQLite's trace callback on a real index; the calls' results
are checked too."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mailsift.protocols.imap import storecalls
from mailsift.store.api import Store

USER = "stmts@example.test"


@pytest.fixture
def box(tmp_path: Path):
    store = Store(tmp_path / "mail")
    box = store.mailbox(USER)
    for i in range(5):
        box.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    yield box
    store.close()


def test_the_session_cycle_reads_and_writes_the_index_sparingly(box) -> None:
    seen: list[str] = []
    box._db.conn.set_trace_callback(seen.append)

    def counted(fn, *args):
        seen.clear()
        out = fn(*args)
        return out, len(seen)

    storecalls.select_data(box, "INBOX", False)  # the first one claims \Recent and fills the cache
    counts = {}
    for r in range(2):  # (the second round after the first's APPEND and EXPUNGE)
        (info, infos, floor, stamp), counts["SELECT"] = counted(storecalls.select_data, box, "INBOX", False)
        assert [m.uid for m in infos] == [1, 2, 3, 4, 5] and info.uidnext == 6 + r and floor == 5 + r
        (changed, before, after), counts["STORE"] = counted(storecalls.store_flags, box, "INBOX", [2],
                                                            ["\\Seen"], "add", None)
        assert after == (before[0], before[1] + len(changed), before[2])
        (new, uidvalidity, listing), counts["APPEND"] = counted(
            storecalls.append, box, "INBOX", b"Subject: new\r\n\r\nnew\r\n", [], None,
            ("INBOX", info.uidvalidity, 5, False))
        assert new.uid == 6 + r and listing[0][-1].uid == new.uid and listing[1] == 5 + r
        assert getattr(uidvalidity, "uidvalidity", uidvalidity) == info.uidvalidity
        (changed, before, after), counts["STORE deleted"] = counted(storecalls.store_flags, box, "INBOX", [new.uid],
                                                                    ["\\Deleted"], "add", None)
        assert [m.uid for m in changed] == [new.uid] and after == (before[0], before[1] + 1, before[2])
        (gone, before, after), counts["EXPUNGE"] = counted(storecalls.expunge, box, "INBOX", None)
        assert gone == [new.uid] and after == (before[0], before[1] + 1, before[2])
    # folder row; subscription, children and \Recent floor in one (also on the event loop)
    assert counts["SELECT"] <= 2, counts
    # folder row, the message's row, BEGIN, two UPDATEs, COMMIT (and a PRAGMA after the APPEND)
    assert counts["STORE"] <= 6 and counts["STORE deleted"] <= 7, counts
    # folder row, the rows flagged \Deleted, BEGIN, DELETE, UPDATE, the tombstone check, COMMIT
    assert counts["EXPUNGE"] <= 7, counts
    # the folder lookup, the commit (row, PRAGMA, BEGIN, INSERT, UPDATE, the \Recent claim's
    # floor and INSERT, COMMIT) and the listing's row
    assert counts["APPEND"] <= 10, counts
    assert sum(counts.values()) <= 32, counts


def test_a_store_that_changes_no_file_stats_no_directory_after_it(box, monkeypatch) -> None:
    """A STORE reads new/ and cur/ mtimes once for its sync; only when it renamed a file does it
    read them again (so that its own change does not look like another program's)."""
    from mailsift.store import maildir

    calls: list[str] = []
    real = maildir.dir_mtime
    monkeypatch.setattr(maildir, "dir_mtime", lambda p: calls.append(str(p)) or real(p))
    box.store_flags("INBOX", [1], ["\\Seen"], "add")
    assert len(calls) == 4  # the sync, and again after the rename
    calls.clear()
    for flags in (["\\Seen"], ["$Label"]):  # nothing new; a keyword only (no rename)
        assert len(box.store_flags("INBOX", [1], flags, "add")) == (flags == ["$Label"])
        assert len(calls) == 2, calls
        calls.clear()
    # and the folder is still seen as in sync: an outside change after it is picked up
    time.sleep(0.01)
    (box.path / "new" / "1700000000.outside.host").write_bytes(b"Subject: outside\n\nhi\n")
    assert len(box.list("INBOX")) == 6
