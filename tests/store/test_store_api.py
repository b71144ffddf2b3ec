"""The store API on a real file system: UIDs, flags in Maildir names, folders, copy/move/expunge,
outside changes, index loss, crash recovery and events."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from mailsift.store.api import (INBOX, FolderExists, FolderNotEmpty, InvalidFlag, NoSuchFolder, NoSuchMessage,
                                Store)
from mailsift.store.events import Event
from mailsift.store.names import InvalidName

MSG = b"From: a@example.test\r\nSubject: %d\r\n\r\nbody %d\r\n.leading dot\r\n"


def msg(i: int) -> bytes:
    return MSG % (i, i)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mail", hostname="test.host")
    yield s
    s.close()


def files(path: Path, sub: str) -> list[str]:
    return sorted(os.listdir(path / sub))


def test_new_mailbox_layout_is_maildirplusplus(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    root = store.root / "example.test" / "alice"
    assert box.path == root
    for d in ("", ".Junk", ".Sent", ".Drafts", ".Trash", ".Quarantine"):
        for sub in ("cur", "new", "tmp"):
            assert (root / d / sub).is_dir()
    assert (root / ".Junk" / "maildirfolder").exists()
    uses = {f.name: f.special_use for f in box.folders()}
    assert uses == {"INBOX": None, "Junk": "\\Junk", "Sent": "\\Sent", "Drafts": "\\Drafts", "Trash": "\\Trash",
                    "Quarantine": None}
    assert box.special_folder("\\Junk") == "Junk"
    assert set(box.subscriptions()) >= {"INBOX", "Junk", "Sent", "Drafts", "Trash"}


def test_deliver_is_complete_in_new_and_uids_ascend(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    uids = [box.deliver(msg(i)).uid for i in range(5)]
    assert uids == [1, 2, 3, 4, 5]
    names = files(box.path, "new")
    assert len(names) == 5 and files(box.path, "tmp") == []
    infos = box.list(INBOX)
    assert [m.uid for m in infos] == uids
    for m in infos:
        data = box.read(INBOX, m.uid)
        assert len(data) == m.size  # size counts CRLF, as IMAP and POP3 need
        assert data == msg(m.uid - 1)
        on_disk = (box.path / "new" / m.key).read_bytes()
        assert b"\r\n" not in on_disk  # LF on disk, like mutt and Dovecot write
    st = box.status(INBOX)
    assert (st.messages, st.unseen, st.uidnext) == (5, 5, 6)


def test_uids_survive_reopen_and_never_come_back(tmp_path: Path) -> None:
    s = Store(tmp_path / "m")
    box = s.mailbox("bob@example.test")
    for i in range(3):
        box.deliver(msg(i))
    box.store_flags(INBOX, [3], {"\\Deleted"})
    assert box.expunge(INBOX) == [3]
    uv = box.folder(INBOX).uidvalidity
    s.close()
    s2 = Store(tmp_path / "m")
    box2 = s2.mailbox("bob@example.test")
    assert box2.folder(INBOX).uidvalidity == uv
    assert [m.uid for m in box2.list(INBOX)] == [1, 2]
    assert box2.deliver(msg(9)).uid == 4  # 3 is never reused
    s2.close()


def test_flags_live_in_the_file_name_and_keywords_in_the_index(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    uid = box.deliver(msg(1)).uid
    changed = box.store_flags(INBOX, [uid], ["\\seen", "\\FLAGGED", "$Junk", "\\Recent"], "add")
    assert changed[0].flags == {"\\Seen", "\\Flagged", "$Junk"}
    [name] = files(box.path, "cur")
    assert name.endswith(":2,FS")
    assert files(box.path, "new") == []
    box.store_flags(INBOX, [uid], {"\\Seen"}, "remove")
    [name] = files(box.path, "cur")
    assert name.endswith(":2,F")
    box.store_flags(INBOX, [uid], {"\\Answered", "\\Draft", "\\Deleted", "$Forwarded", "NonJunk"}, "replace")
    [name] = files(box.path, "cur")
    assert name.endswith(":2,DPRT")
    assert box.get(INBOX, uid).flags == {"\\Answered", "\\Draft", "\\Deleted", "$Forwarded", "NonJunk"}
    with pytest.raises(InvalidFlag):
        box.store_flags(INBOX, [uid], {"\\Bogus"})
    with pytest.raises(InvalidFlag):
        box.store_flags(INBOX, [uid], {"bad keyword"})


def test_copy_move_expunge_and_their_events(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    seen: list[Event] = []
    sub = store.subscribe(seen.append, user="alice@example.test")
    for i in range(3):
        box.deliver(msg(i))
    box.store_flags(INBOX, [2], {"\\Seen"})
    assert box.copy(INBOX, [1, 2, 99], "Trash") == [(1, 1), (2, 2)]
    assert box.move(INBOX, [2, 3], "Junk") == [(2, 1), (3, 2)]
    assert [m.uid for m in box.list(INBOX)] == [1]
    assert box.get("Junk", 1).flags == {"\\Seen"}
    assert box.read("Junk", 2) == msg(2)
    assert box.read("Trash", 2) == msg(1)
    moved = [e for e in seen if e.kind == "new" and e.via == "move"]
    assert [(e.folder, e.special_use, e.uid, e.source_folder, e.source_uid) for e in moved] == [
        ("Junk", "\\Junk", 1, "INBOX", 2), ("Junk", "\\Junk", 2, "INBOX", 3)]
    assert [(e.folder, e.uid) for e in seen if e.kind == "expunge"] == [("INBOX", 2), ("INBOX", 3)]
    # moving back out of Junk tells where it came from (learn-on-move needs no protocol code)
    box.move("Junk", [1], INBOX)
    back = seen[-2]
    assert (back.kind, back.folder, back.source_special_use) == ("new", INBOX, "\\Junk")
    sub.close()
    n = len(seen)
    box.deliver(msg(7))
    assert len(seen) == n  # unsubscribed
    box.store_flags("Trash", [1, 2], {"\\Deleted"})
    assert box.expunge("Trash", uids=[2]) == [2]
    assert box.expunge("Trash") == [1]
    assert box.list("Trash") == []
    with pytest.raises(NoSuchMessage):
        box.read("Trash", 1)


def test_delete_folder_with_children_leaves_a_noselect_parent(store: Store) -> None:
    """RFC 3501 6.3.4 / RFC 9051 6.3.4: DELETE of a folder with inferior names removes the
    folder and its messages, never the inferiors; the name stays as a \\Noselect parent (no
    folder of its own), and DELETE of that parent is refused (FolderNotEmpty)."""
    box = store.mailbox("alice@example.test")
    box.create_folder("Proj")
    box.create_folder("Proj.kid")
    box.append("Proj", msg(1))
    box.append("Proj.kid", msg(2))
    uv = box.folder("Proj").uidvalidity
    box.set_subscribed("Proj")
    box.delete_folder("Proj")
    assert not (box.path / ".Proj").exists() and (box.path / ".Proj.kid" / "maildirfolder").exists()
    names = {f.name for f in box.folders()}
    assert "Proj" not in names and "Proj.kid" in names
    assert [m.uid for m in box.list("Proj.kid")] == [1]
    with pytest.raises(NoSuchFolder):
        box.list("Proj")
    with pytest.raises(FolderNotEmpty, match="inferior"):
        box.delete_folder("Proj")                       # \\Noselect with children
    assert "Proj" in box.subscriptions()                # DELETE does not unsubscribe (RFC 3501)
    # a new folder of that name is a new mailbox: empty, a new UIDVALIDITY
    box.create_folder("Proj")
    assert box.list("Proj") == [] and box.folder("Proj").uidvalidity > uv
    box.delete_folder("Proj.kid")
    box.delete_folder("Proj")
    with pytest.raises(NoSuchFolder):
        box.delete_folder("Proj")                       # nothing left of the name
    with pytest.raises(FolderNotEmpty):
        box.delete_folder("INBOX")


def test_folder_create_rename_delete_hierarchy(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    box.create_folder("Lists")
    box.create_folder("Lists.python")
    assert {"Lists", "Lists.python"} <= {f.name for f in box.folders()}
    assert box.folder("Lists").has_children
    assert (box.path / ".Lists.python" / "maildirfolder").exists()
    with pytest.raises(FolderExists):
        box.create_folder("Lists")
    uid = box.append("Lists.python", msg(1), flags={"\\Seen"}, internal_date=1_000_000_000.0).uid
    uv = box.folder("Lists.python").uidvalidity
    box.rename_folder("Lists", "Archive.Lists")
    names = {f.name for f in box.folders()}
    assert "Archive.Lists.python" in names and "Lists" not in names and "Lists.python" not in names
    renamed = box.folder("Archive.Lists.python")
    assert renamed.uidvalidity == uv
    info = box.get("Archive.Lists.python", uid)
    assert info.internal_date == 1_000_000_000.0 and info.flags == {"\\Seen"}
    box.delete_folder("Archive.Lists.python")
    assert not (box.path / ".Archive.Lists.python").exists()
    with pytest.raises(FolderNotEmpty):
        box.delete_folder("INBOX")
    with pytest.raises(NoSuchFolder):
        box.list("Nope")
    box.create_folder("Entwürfe")
    assert (box.path / ".Entw&APw-rfe").is_dir()  # modified UTF-7 on disk, as Dovecot
    box.set_subscribed("Entwürfe")
    assert "Entwürfe" in box.subscriptions()
    box.set_subscribed("Entwürfe", False)
    assert "Entwürfe" not in box.subscriptions()


def test_rename_inbox_moves_its_messages(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    box.deliver(msg(1))
    box.deliver(msg(2))
    box.rename_folder("INBOX", "Old")
    assert box.list(INBOX) == []
    assert [box.read("Old", m.uid) for m in box.list("Old")] == [msg(1), msg(2)]


@pytest.mark.parametrize("bad", ["../../../etc", "/etc", "a/b", "x\x00y", ".."])
def test_bad_folder_names_touch_nothing(store: Store, bad: str) -> None:
    box = store.mailbox("alice@example.test")
    before = sorted(str(p) for p in store.root.rglob("*"))
    for call in (lambda: box.create_folder(bad), lambda: box.deliver(msg(1), folder=bad),
                 lambda: box.append(bad, msg(1)), lambda: box.rename_folder("Junk", bad)):
        with pytest.raises(InvalidName):
            call()
    assert sorted(str(p) for p in store.root.rglob("*") if "mailsift-index" not in str(p)) == \
        [p for p in before if "mailsift-index" not in p]
    with pytest.raises(InvalidName):
        store.mailbox("../evil@example.test")
    with pytest.raises(InvalidName):
        store.mailbox("evil@../../tmp")


def test_outside_changes_are_picked_up(store: Store) -> None:
    """mutt and Dovecot change the Maildir directly: new files, renames (flags), deletions."""
    box = store.mailbox("alice@example.test")
    seen: list[Event] = []
    store.subscribe(seen.append)
    box.deliver(msg(1))
    box.deliver(msg(2))
    # another MDA drops a file into new/
    (box.path / "tmp" / "9999.outside.host").write_bytes(b"Subject: outside\n\nhi\n")
    os.rename(box.path / "tmp" / "9999.outside.host", box.path / "new" / "9999.outside.host")
    # mutt marks message 1 seen and deletes message 2
    m1, m2 = box.list(INBOX)[:2]
    os.rename(box.path / "new" / m1.key, box.path / "cur" / (m1.key + ":2,S"))
    os.unlink(box.path / "new" / m2.key)
    infos = box.list(INBOX)
    assert [m.uid for m in infos] == [1, 3]
    assert infos[0].flags == {"\\Seen"}
    assert box.read(INBOX, 3) == b"Subject: outside\r\n\r\nhi\r\n"
    assert infos[1].size == len(b"Subject: outside\r\n\r\nhi\r\n")
    kinds = [(e.kind, e.uid, e.via) for e in seen if e.via == "sync"]
    assert ("expunge", 2, "sync") in kinds and ("new", 3, "sync") in kinds and ("flags", 1, "sync") in kinds


def test_lost_index_is_rebuilt_with_a_new_uidvalidity(tmp_path: Path) -> None:
    s = Store(tmp_path / "m")
    box = s.mailbox("carol@example.test")
    for i in range(4):
        box.deliver(msg(i))
    box.store_flags(INBOX, [2], {"\\Seen", "\\Answered"})
    box.move(INBOX, [3], "Junk")
    uv = {f.name: f.uidvalidity for f in box.folders()}
    s.close()
    for p in box.path.glob("mailsift-index.sqlite3*"):
        p.unlink()
    s2 = Store(tmp_path / "m")
    box2 = s2.mailbox("carol@example.test")
    for f in box2.folders():
        assert f.uidvalidity > uv[f.name]
    inbox = box2.list(INBOX)
    assert len(inbox) == 3 and [m.uid for m in inbox] == [1, 2, 3]
    assert [box2.read(INBOX, m.uid) for m in inbox] == [msg(0), msg(1), msg(3)]  # delivery order kept
    assert inbox[1].flags == {"\\Seen", "\\Answered"}
    assert [box2.read("Junk", m.uid) for m in box2.list("Junk")] == [msg(2)]
    s2.close()


def test_a_rebuilt_index_keeps_delivery_order_within_one_file_time_tick(tmp_path: Path) -> None:
    """File times tick every few milliseconds, so deliveries in one tick tie on mtime; their
    names (T.M<microseconds>P<pid>Q<n>) then give the order, read as numbers: M572 before M2696."""
    s = Store(tmp_path / "m")
    box = s.mailbox("carol@example.test")
    box.deliver(msg(0))  # creates the Maildir
    s.close()
    cur = box.path / "cur"
    for p in list(cur.iterdir()) + list((box.path / "new").iterdir()):
        p.unlink()
    names = ["1796706535.M572P19122Q0.vm,S=10:2,", "1796706535.M2696P19122Q1.vm,S=10:2,",
             "1796706535.M10005P19122Q2.vm,S=10:2,"]
    for i, name in enumerate(names):
        (cur / name).write_bytes(msg(i))
        os.utime(cur / name, ns=(1_796_706_535_000_000_000, 1_796_706_535_000_000_000))
    for p in box.path.glob("mailsift-index.sqlite3*"):
        p.unlink()
    s2 = Store(tmp_path / "m")
    box2 = s2.mailbox("carol@example.test")
    assert [box2.read(INBOX, m.uid) for m in box2.list(INBOX)] == [msg(0), msg(1), msg(2)]
    s2.close()


def test_corrupt_index_is_set_aside_and_rebuilt(tmp_path: Path) -> None:
    s = Store(tmp_path / "m")
    box = s.mailbox("dave@example.test")
    box.deliver(msg(1))
    s.close()
    for p in box.path.glob("mailsift-index.sqlite3-*"):
        p.unlink()
    (box.path / "mailsift-index.sqlite3").write_bytes(b"this is not sqlite" * 100)
    s2 = Store(tmp_path / "m")
    assert [s2.mailbox("dave@example.test").read(INBOX, m.uid) for m in s2.mailbox("dave@example.test").list(INBOX)] \
        == [msg(1)]
    assert list(box.path.glob("mailsift-index.sqlite3.broken-*"))
    s2.close()


def test_crash_between_index_commit_and_rename_rolls_forward(tmp_path: Path) -> None:
    """A file committed to the index but still in tmp/ (killed before the rename) is recovered;
    an uncommitted one left by a dead writer is removed."""
    s = Store(tmp_path / "m")
    box = s.mailbox("erin@example.test")
    box.deliver(msg(1))
    m = box.list(INBOX)[0]
    s.close()
    os.rename(box.path / "new" / m.key, box.path / "tmp" / m.key)  # as if killed before rename
    orphan = box.path / "tmp" / "1.M1P999999Q1.host,S=1,W=1"  # a writer that died before committing
    orphan.write_bytes(b"x")
    s2 = Store(tmp_path / "m")
    box2 = s2.mailbox("erin@example.test")
    assert [x.uid for x in box2.list(INBOX)] == [1]
    assert box2.read(INBOX, 1) == msg(1)
    assert files(box2.path, "tmp") == []
    s2.close()


def test_dedup_key_makes_a_retry_a_noop(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    a = box.deliver(msg(1), dedup_key="k1")
    b = box.deliver(msg(1), dedup_key="k1")
    assert not a.duplicate and b.duplicate and (b.folder, b.uid) == (a.folder, a.uid)
    assert len(box.list(INBOX)) == 1
    assert files(box.path, "tmp") == []


def test_concurrent_deliveries_get_unique_ascending_uids(store: Store) -> None:
    box = store.mailbox("alice@example.test")
    results: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(20):
            uid = box.deliver(msg(n * 100 + i)).uid
            with lock:
                results.append(uid)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(1, 121))
    assert [m.uid for m in box.list(INBOX)] == list(range(1, 121))
    assert len(files(box.path, "new")) == 120


def test_asyncio_watch_reports_a_delivery_from_another_thread(store: Store) -> None:
    box = store.mailbox("alice@example.test")

    async def main() -> Event:
        async with store.watch("alice@example.test") as events:
            await asyncio.to_thread(box.deliver, msg(1), "Junk")
            return await asyncio.wait_for(events.get(), 5)

    ev = asyncio.run(main())
    assert (ev.kind, ev.folder, ev.special_use, ev.uid, ev.via) == ("new", "Junk", "\\Junk", 1, "deliver")


def test_a_failing_subscriber_does_not_undo_the_change(store: Store) -> None:
    box = store.mailbox("alice@example.test")

    def boom(ev: Event) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(boom)
    assert box.deliver(msg(1)).uid == 1
    assert len(box.list(INBOX)) == 1


def test_readable_by_python_mailbox_module(store: Store) -> None:
    """Python's mailbox.Maildir reads our tree the way mutt does (flags from the info part)."""
    import mailbox

    box = store.mailbox("alice@example.test")
    box.deliver(msg(1))
    box.deliver(msg(2), folder="Junk")
    box.store_flags(INBOX, [1], {"\\Seen", "\\Flagged"})
    mb = mailbox.Maildir(str(box.path), factory=None, create=False)
    [m] = list(mb)
    assert m.get_flags() == "FS" and m["Subject"] == "1"
    assert sorted(mb.list_folders()) == ["Drafts", "Junk", "Quarantine", "Sent", "Trash"]
    [j] = list(mb.get_folder("Junk"))
    assert j["Subject"] == "2"


def test_locked_index_fails_cleanly(tmp_path: Path) -> None:
    """Another process holds the index locked: the delivery fails (the LMTP layer answers 4xx) and
    leaves nothing behind; once the lock is gone it works."""
    import sqlite3

    s = Store(tmp_path / "m", lock_timeout=0.3)
    box = s.mailbox("lock@example.test")
    other = sqlite3.connect(box.path / "mailsift-index.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(sqlite3.OperationalError):
        box.deliver(msg(1))
    assert files(box.path, "new") == [] and files(box.path, "tmp") == []
    other.execute("ROLLBACK")
    other.close()
    assert box.deliver(msg(1)).uid == 1
    s.close()
