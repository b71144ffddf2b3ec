"""The mailbox's change counter (mailsift/store/locks.py) and the folder rows cached on it
(api.Mailbox._cached): while no write transaction began since, the per-command stamp check,
NOOP's check and the event-loop calls read no SQLite; a change by another process is seen at
once; a writer that dies inside its transaction, or between its commit and the counter's
second step, leaves readers reading the index, never a stale row."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailsift.store.api import INBOX, Store

USER = "changes@example.test"
TREE = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "mail")
    box = store.mailbox(USER)
    for i in range(5):
        box.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    box.list(INBOX)
    yield store, box, tmp_path / "mail"
    store.close()


def other_process(root: Path, body: str) -> subprocess.Popen[str]:
    """A separate Python process that opens the same mailbox (`box`) and runs `body`."""
    code = textwrap.dedent("""
        import os, signal, sys
        from mailsift.store.api import Store, INBOX
        box = Store(sys.argv[1]).mailbox(sys.argv[2])
    """) + textwrap.dedent(body)
    env = {**os.environ, "PYTHONPATH": TREE}
    return subprocess.Popen([sys.executable, "-c", code, str(root), USER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


def test_nothing_changed_means_no_index_read(world) -> None:
    _store, box, _root = world
    box.select(INBOX, False)  # (the first SELECT claims \\Recent: a write)
    box.select_nowait(INBOX, False)
    stamp = box.stamp_nowait(INBOX)
    seen: list[str] = []
    box._db.conn.set_trace_callback(seen.append)
    for _ in range(5):
        assert box.stamp_nowait(INBOX) == stamp
        assert box.unchanged_nowait(INBOX, stamp)
    for _ in range(2):
        assert box.select_nowait(INBOX, False)[3] == stamp
    assert box.stamp(INBOX) == stamp
    assert seen == []
    box.store_flags(INBOX, [2], ["\\Seen"], "add")  # our own change: its new row is kept
    box.append(INBOX, b"Subject: own\r\n\r\nx\r\n")
    box.store_flags(INBOX, [3], ["\\Deleted"], "add")
    box.expunge(INBOX)
    seen.clear()
    new = box.stamp_nowait(INBOX)
    assert new == (stamp[0], stamp[1] + 4, stamp[2] + 1) and box.stamp_nowait(INBOX) == new
    assert [s for s in seen if "FROM folders" in s] == [], seen
    box._rows.clear()  # (what the index says)
    assert box.stamp_nowait(INBOX) == new


def test_a_change_by_another_process_is_seen_at_once(world) -> None:
    _store, box, root = world
    stamp = box.stamp_nowait(INBOX)
    p = other_process(root, """
        box.store_flags(INBOX, [1], ["\\\\Flagged"], "add")
        box.append(INBOX, b"Subject: other\\r\\n\\r\\nhi\\r\\n")
        print(box.stamp(INBOX), flush=True)
    """)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == 0
    now = box.stamp_nowait(INBOX)
    assert str(now) == out.strip() and now == (stamp[0], stamp[1] + 2, stamp[2] + 1)
    assert not box.unchanged_nowait(INBOX, stamp)
    assert [m.uid for m in box.list(INBOX)] == [1, 2, 3, 4, 5, 6]


def test_a_writer_that_dies_after_its_commit_leaves_no_stale_row(world) -> None:
    """The other process begins a transaction (the counter goes odd), this one reads the
    folder's row meanwhile (the old one: not committed yet), the other commits and is killed
    before the counter's second step. This process must then see the committed row: a reader
    that cached what it read while the write was under way would keep the old stamp."""
    _store, box, root = world
    stamp = box.stamp_nowait(INBOX)
    p = other_process(root, """
        box._db.on_change = lambda done: None if done else box._lock.change_begins()
        fid = box._db.folder(INBOX)["id"]
        with box._lock:
            with box._db.txn():
                box._db.set_modseq(fid, box._db.folder(INBOX)["highestmodseq"] + 7)
                print("in", flush=True)
                sys.stdin.readline()
            os.kill(os.getpid(), signal.SIGKILL)  # committed; the counter is left odd
    """)
    try:
        assert p.stdout is not None and p.stdin is not None
        assert p.stdout.readline().strip() == "in"
        assert box._lock.changes() & 1
        assert box.stamp_nowait(INBOX) == stamp  # (the write is not committed yet)
        p.stdin.write("go\n")
        p.stdin.flush()
        assert p.wait(60) == -signal.SIGKILL
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    after = (stamp[0], stamp[1] + 7, stamp[2])
    assert box.stamp_nowait(INBOX) == after and box.stamp(INBOX) == after
    box.store_flags(INBOX, [3], ["\\Seen"], "add")  # the next writer makes the counter even again
    assert box._lock.changes() % 2 == 0
    assert box.stamp_nowait(INBOX) == (stamp[0], stamp[1] + 8, stamp[2])


def test_a_writer_that_dies_inside_its_transaction_changes_nothing(world) -> None:
    _store, box, root = world
    stamp = box.stamp_nowait(INBOX)
    p = other_process(root, """
        with box._lock:
            with box._db.txn():
                box._db.set_modseq(box._db.folder(INBOX)["id"], 99)
                print("in", flush=True)
                sys.stdin.readline()
    """)
    assert p.stdout is not None and p.stdout.readline().strip() == "in"
    p.send_signal(signal.SIGKILL)
    p.wait(60)
    assert box.stamp_nowait(INBOX) == stamp  # SQLite rolled it back; read through, not cached
    assert box._lock.changes() & 1
    box.store_flags(INBOX, [1], ["\\Seen"], "add")
    assert box._lock.changes() % 2 == 0 and box.stamp_nowait(INBOX) == (stamp[0], stamp[1] + 1, stamp[2])


def test_the_counter_lives_in_the_lock_file(world) -> None:
    _store, box, _root = world
    lock = box.path / "mailsift-index.lock"
    before = int.from_bytes(lock.read_bytes()[:8], sys.byteorder)
    assert before == box._lock.changes() and before % 2 == 0
    box.store_flags(INBOX, [4], ["\\Answered"], "add")
    assert int.from_bytes(lock.read_bytes()[:8], sys.byteorder) == before + 2


def test_a_file_dropped_in_new_during_our_own_change_is_still_found(world, monkeypatch) -> None:
    """After its own rename in cur/, a STORE reads the mtime of cur/ alone: new/ keeps the mtime
    it was synced at, so a message another program put there meanwhile is picked up next time
    (re-reading both directories' mtimes after the change would have hidden it)."""
    _store, box, _root = world
    from mailsift.store import api

    box.store_flags(INBOX, [1], ["\\Seen"], "add")  # (now in cur/)
    real = os.rename
    newdir = box.path / "new"

    def rename_and_drop(src: str, dst: str) -> None:
        real(src, dst)
        (newdir / "1700000000.outside.host").write_bytes(b"Subject: outside\n\nhi\n")
        st = os.stat(newdir)
        os.utime(newdir, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # (a later tick)

    monkeypatch.setattr(api.os, "rename", rename_and_drop)
    assert box.store_flags_nowait(INBOX, [1], ["\\Flagged"], "add") is not None
    monkeypatch.undo()
    assert [m.uid for m in box.list(INBOX)] == [1, 2, 3, 4, 5, 6]


def test_an_append_to_the_selected_folder_reads_its_directories_three_times(world, monkeypatch) -> None:
    """APPEND (storecalls.append into the view's folder): new/ and cur/ once for its sync, cur/
    once after its rename into cur/; the view's listing needs no other sync."""
    _store, box, _root = world
    from mailsift.protocols.imap import storecalls
    from mailsift.store import maildir

    info, infos, _floor, _stamp = box.select(INBOX, False)
    calls: list[str] = []
    real = maildir.dir_mtime
    monkeypatch.setattr(maildir, "dir_mtime", lambda p: calls.append(str(p)) or real(p))
    new, _uv, listing = storecalls.append(box, INBOX, b"Subject: a\r\n\r\nb\r\n", [], None,
                                          (INBOX, info.uidvalidity, infos[-1].uid, False))
    assert [c.rsplit("/", 1)[1] for c in calls] == ["new", "cur", "cur"]
    assert [m.uid for m in listing[0]] == [1, 2, 3, 4, 5, 6] and new.uid == 6
    calls.clear()
    assert box.unchanged_nowait(INBOX, listing[2])  # (in sync: the mtimes recorded are the real ones)


def test_event_loop_commits_in_a_row_switch_no_pragma(world) -> None:
    """A commit on the event loop's thread (no automatic WAL checkpoint) after another sets
    `wal_autocheckpoint` no more; a thread's commit after them sets it back, once."""
    _store, box, _root = world
    box.store_flags_nowait(INBOX, [1], ["\\Seen"], "add")
    seen: list[str] = []
    box._db.conn.set_trace_callback(seen.append)
    for uid in (2, 3):
        assert box.store_flags_nowait(INBOX, [uid], ["\\Seen"], "add") is not None
    assert not [s for s in seen if s.startswith("PRAGMA")], seen
    assert box._db.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    seen.clear()
    box.store_flags(INBOX, [4], ["\\Seen"], "add")  # (a thread's call)
    assert [s for s in seen if s.startswith("PRAGMA")] == ["PRAGMA wal_autocheckpoint=1000"], seen
