"""SQL statements per store call of the IMAP session cycle (perf, docs/store.md "Durability and
the performance shortcuts"): each call reads the folder's row once under its lock hold, commits
in one transaction and switches the connection's `synchronous` setting only when a transaction
wants the other one. Counted with SQLite's trace callback on a real index; the calls' results
are checked too."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from mailsift.protocols.imap import storecalls
from mailsift.store import vanished
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


@pytest.mark.parametrize("tracked", [False, True], ids=["plain", "qresync"])
def test_the_session_cycle_reads_and_writes_the_index_sparingly(box, tracked: bool) -> None:
    if tracked:
        box.track_expunges()  # (a QRESYNC client: every expunge leaves tombstones)
    seen: list[str] = []
    every: list[str] = []
    box._db.conn.set_trace_callback(seen.append)

    counts: dict[str, int] = {}

    def counted(what, fn, *args):
        seen.clear()
        out = fn(*args)
        counts[what] = max(counts.get(what, 0), len(seen))  # the dearer of the two rounds
        every.extend(seen)
        return out

    storecalls.select_data(box, "INBOX", False)  # the first one claims \Recent and fills the cache
    for r in range(2):  # (the second round after the first's APPEND and EXPUNGE)
        info, infos, floor, _stamp = counted("SELECT", storecalls.select_data, box, "INBOX", False)
        assert [m.uid for m in infos] == [1, 2, 3, 4, 5] and info.uidnext == 6 + r and floor == 5 + r
        changed, before, after = counted("STORE", storecalls.store_flags, box, "INBOX", [2 + r], ["\\Seen"], "add",
                                         None)
        assert [m.uid for m in changed] == [2 + r] and after == (before[0], before[1] + 1, before[2])
        new, uidvalidity, listing = counted("APPEND", storecalls.append, box, "INBOX", b"Subject: new\r\n\r\nnew\r\n",
                                            [], None, ("INBOX", info.uidvalidity, 5, False))
        assert new.uid == 6 + r and listing[0][-1].uid == new.uid and listing[1] == 5 + r
        assert getattr(uidvalidity, "uidvalidity", uidvalidity) == info.uidvalidity
        assert counted("read", box.read_nowait, "INBOX", new.uid) == b"Subject: new\r\n\r\nnew\r\n"
        changed, before, after = counted("STORE deleted", storecalls.store_flags, box, "INBOX", [new.uid],
                                         ["\\Deleted"], "add", None)
        assert [m.uid for m in changed] == [new.uid] and after == (before[0], before[1] + 1, before[2])
        gone, before, after = counted("EXPUNGE", storecalls.expunge, box, "INBOX", None)
        assert gone == [new.uid] and after == (before[0], before[1] + 1, before[2])
        if tracked:  # (expunged_since() would turn tracking on)
            assert box.expunged_since("INBOX", info.uidvalidity, before[1]) == [(6 + r, 6 + r)]
    # the folder's row is cached (the store's own commits keep it): SELECT's extras in one
    # statement (subscription, children and \Recent floor), plus the folder row the first time
    assert counts["SELECT"] <= 2, counts
    # the message's row, BEGIN, two UPDATEs, COMMIT (and a PRAGMA after the APPEND's durable commit)
    assert counts["STORE"] <= 5 and counts["STORE deleted"] <= 6, counts
    # the commit: PRAGMA, BEGIN, INSERT, UPDATE, the \Recent claim's floor and INSERT, COMMIT
    assert counts["APPEND"] <= 7, counts
    # the message's file by folder id and UID (the folder's id from the cached row)
    assert counts["read"] == 1 and not any("JOIN" in s for s in every), counts
    # the rows flagged \Deleted, BEGIN, DELETE, UPDATE, COMMIT, and whether tombstones are
    # tracked (sqlite_master) while they are not; once they are, the connection knows it, and
    # instead come the DELETE's trigger (traced as two statements) and the tombstones' cut
    assert counts["EXPUNGE"] <= (8 if tracked else 6), counts
    assert tracked != any("sqlite_master" in s for s in every)
    assert sum(counts.values()) <= (29 if tracked else 27), counts


def test_expunges_keep_tombstones_bounded_whoever_started_them(tmp_path: Path, monkeypatch) -> None:
    """Whether an EXPUNGE prunes tombstones follows the index: tracking turned on by another
    connection (another IMAP worker) after this one opened is followed, and what a connection
    remembers (IndexDB.vanished_tracked) goes with a rebuilt index (no tombstones until QRESYNC
    is used again)."""
    monkeypatch.setattr(vanished, "KEEP", 3)
    store = Store(tmp_path / "mail")
    box = store.mailbox(USER)
    for i in range(12):
        box.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    index = box.path / "mailsift-index.sqlite3"

    def expunge(uid: int) -> None:
        box.store_flags("INBOX", [uid], ["\\Deleted"])
        assert box.expunge("INBOX") == [uid]

    def tombstones() -> list[int] | None:
        with closing(sqlite3.connect(index)) as db:
            if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'vanished'").fetchone() is None:
                return None
            return [r[0] for r in db.execute("SELECT uid FROM vanished ORDER BY uid")]

    expunge(1)
    assert tombstones() is None  # not tracked: nothing written, nothing pruned, no error
    other = Store(tmp_path / "mail")
    other.mailbox(USER).track_expunges()
    other.close()
    for uid in range(2, 8):
        expunge(uid)
    assert tombstones() == [5, 6, 7]  # pruned by this connection's expunges
    uv = box.folder("INBOX").uidvalidity
    assert box.expunged_since("INBOX", uv, 0) == [(1, 7)]

    with box._lock:  # as a running process does with an index found corrupt (Mailbox._on_db_error)
        box._reopen_index(rebuild=True)
    uids = box.uids("INBOX")
    assert len(uids) == 5 and tombstones() is None
    expunge(uids[0])
    box.track_expunges()
    for uid in uids[1:]:
        expunge(uid)
    assert tombstones() == uids[2:]
    store.close()


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
