"""The store calls an IMAP session makes on its event loop's thread (Mailbox.select_nowait,
store_flags_nowait): they do the work at once when that means no wait, and
otherwise answer None having done nothing, so the session hands the call to a thread. Never
on the loop: waiting for a mailbox another process (or thread) holds, syncing a folder another
program changed, large sets, or SQLite's WAL checkpoint (two fsyncs); the WAL stays bounded."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mailsift.store import api
from mailsift.store.api import Store
from mailsift.store.index import INDEX_NAME
from store_harness import held

USER = "nowait@example.test"


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "mail")
    box = store.mailbox(USER)
    for i in range(30):
        box.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    box.list("INBOX")
    yield store, box, tmp_path
    store.close()


def flags_of(box: api.Mailbox, uid: int) -> frozenset[str]:
    return box.get("INBOX", uid).flags


def test_a_free_mailbox_answers_at_once_as_the_threaded_calls_do(world) -> None:
    _store, box, _d = world
    before = box.stamp("INBOX")
    changed, b, a = box.store_flags_nowait("INBOX", [3, 4], ["\\Deleted"], "add")
    assert [m.uid for m in changed] == [3, 4] and b == before and a == (before[0], before[1] + 2, before[2])
    assert flags_of(box, 3) == {"\\Deleted"}
    info, infos, floor, stamp = box.select_nowait("INBOX", False)
    assert stamp == a and len(infos) == 30 and info.uidnext == 31 and floor is not None
    assert [m.uid for m in box.list("INBOX") if "\\Deleted" in m.flags] == [3, 4]
    names = os.listdir(box.path / "cur")
    assert sorted(n.rsplit(",", 1)[1] for n in names) == ["T", "T"]  # the flags are in the names


def test_a_mailbox_held_elsewhere_is_left_alone(world) -> None:
    store, box, d = world
    other = Store(d / "mail")  # another process: its own lock file descriptor
    try:
        with held(other.mailbox(USER)):
            stamp = box.stamp_nowait("INBOX")
            t0 = time.monotonic()
            assert box.store_flags_nowait("INBOX", [1], ["\\Seen"], "add") is None
            assert box.select_nowait("INBOX", False) is None
            assert time.monotonic() - t0 < 1.0  # no wait for the lock
        # another thread of this process holding the mailbox counts too
        with held(box):
            assert box.store_flags_nowait("INBOX", [1], ["\\Seen"], "add") is None
        assert box.stamp("INBOX") == stamp and "\\Seen" not in flags_of(box, 1)  # nothing was done
        assert box.store_flags_nowait("INBOX", [1], ["\\Seen"], "add") is not None  # free again
    finally:
        other.close()


def test_a_folder_changed_on_disk_and_large_sets_go_to_a_thread(world) -> None:
    _store, box, _d = world
    time.sleep(0.01)  # (directory mtimes; the file system's clock may be coarser)
    (box.path / "new" / "1700000000.outside.host").write_bytes(b"Subject: outside\n\nhi\n")
    stamp = box.stamp("INBOX")
    assert box.select_nowait("INBOX", False) is None  # the sync that adopts it runs in a thread
    assert box.store_flags_nowait("INBOX", [1], ["\\Seen"], "add") is None
    assert box.stamp("INBOX") == stamp
    _info, infos, _floor, _stamp = box.select("INBOX", False)
    assert len(infos) == 31
    assert box.select_nowait("INBOX", False) is not None  # in sync again
    many = list(range(1, api.NOWAIT_MAX_UIDS + 2))
    assert box.store_flags_nowait("INBOX", many, ["\\Deleted"], "add") is None
    assert not any("\\Deleted" in m.flags for m in box.list("INBOX"))


def test_the_loop_never_checkpoints_the_wal_and_the_wal_stays_bounded(world, monkeypatch) -> None:
    _store, box, _d = world
    db = box.path / INDEX_NAME
    box.store_flags("INBOX", [1], ["\\Flagged"], "add")  # a commit that checkpoints when due
    monkeypatch.setattr(api, "NOWAIT_MAX_UNCHECKED", 1200)
    main_file = os.stat(db)
    done = 0
    while done < 2000:  # about 3 WAL pages a commit: well past SQLite's 1,000-page checkpoint
        mode = "remove" if done % 2 == 0 else "add"
        if box.store_flags_nowait("INBOX", [1], ["\\Flagged"], mode) is None:
            break
        done += 1
    assert done == 1200
    after = os.stat(db)
    assert (after.st_mtime_ns, after.st_size) == (main_file.st_mtime_ns, main_file.st_size)  # no checkpoint
    assert os.stat(str(db) + "-wal").st_size > 1000 * 4096
    assert "\\Flagged" in flags_of(box, 1)
    box.store_flags("INBOX", [1], ["\\Flagged"], "remove")  # a thread's commit: checkpoints
    assert os.stat(db).st_mtime_ns != main_file.st_mtime_ns
    assert box.store_flags_nowait("INBOX", [1], ["\\Flagged"], "add") is not None


def test_select_reports_what_folder_and_claim_recent_report(world) -> None:
    _store, box, _d = world
    box.create_folder("Lists")
    box.create_folder("Lists.Python")
    box.set_subscribed("Lists", False)
    box.set_subscribed("Lists.Python", True)
    for name, readonly in (("Lists", False), ("Lists.Python", True), ("INBOX", True)):
        folder = box.folder(name)
        floor_before = box.claim_recent(name, folder.uidvalidity, 0, readonly=True)
        for select in (box.select, box.select_nowait):
            got = select(name, readonly)
            if got is None:  # (select_nowait: the listing not in memory yet)
                got = box.select(name, readonly)
            info, infos, floor, _stamp = got
            assert info == folder, name
            assert floor == (floor_before if infos else None), name
    assert box.folder("Lists").has_children and not box.folder("Lists").subscribed
    assert box.folder("Lists.Python").subscribed and not box.folder("Lists.Python").has_children
    # a claim by another UIDVALIDITY of the same folder counts for nothing
    inbox = box.folder("INBOX")
    box.claim_recent("INBOX", inbox.uidvalidity + 1, 1000)
    box.claim_recent("INBOX", inbox.uidvalidity, 0)
    assert box.select("INBOX", True)[2] == box.claim_recent("INBOX", inbox.uidvalidity, 0, readonly=True) == 0
