"""The store's folder listing cache (api.ListingCache, used by Mailbox.list): it must never serve
a listing that a change made it stale, whoever made the change: this process (patched), another
Store on the same root (another process: the stamp check), an outside MDA or mutt writing the
Maildir directly (the directory mtime check), renames, deletions, and its bounds.

Each check compares what list() says with what is on disk and in the index, read by a fresh
Store (its own, empty cache) or spelled out."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from store_harness import inside_another_thread

from mailsift.store.api import INBOX, ListingCache, MessageInfo, NoSuchFolder, NoSuchMessage, Store

ALICE = "alice@example.test"
BOB = "bob@example.test"


def msg(i: int, subject: str = "") -> bytes:
    return b"From: a@example.test\r\nSubject: %s %d\r\n\r\nbody %d\r\n" % (subject.encode(), i, i)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "mail"


@pytest.fixture
def store(root: Path):
    s = Store(root, hostname="cache.test")
    yield s
    s.close()


def view(infos: list[MessageInfo]) -> list[tuple[int, frozenset[str], int, int]]:
    return [(m.uid, m.flags, m.size, m.modseq) for m in infos]


def fresh(root: Path, folder: str, user: str = ALICE) -> list[tuple[int, frozenset[str], int, int]]:
    """The folder as a new Store (nothing cached) reads it. Only call it when the index is in
    step with the files (opening a Store syncs, which would change the index)."""
    s = Store(root, hostname="other.test")
    try:
        return view(s.mailbox(user).list(folder))
    finally:
        s.close()


def cached_keys(store: Store) -> set[tuple[str, int]]:
    return set(store.listings._items)


def folder_id(store: Store, user: str, folder: str) -> int:
    box = store.mailbox(user)
    return box._frow(folder)["id"]


# --------------------------------------------------------------------------- this process

def test_own_flag_changes_appends_expunges_copies_and_moves_are_in_the_next_listing(store: Store, root: Path) -> None:
    box = store.mailbox(ALICE)
    box.create_folder("Work")
    for i in range(6):
        box.deliver(msg(i))
    first = box.list(INBOX)
    assert (ALICE, folder_id(store, ALICE, INBOX)) in cached_keys(store)  # the cache is in play
    assert [m.uid for m in first] == [1, 2, 3, 4, 5, 6]

    box.store_flags(INBOX, [2, 3], {"\\Seen", "$Junk"}, "add")
    got = box.list(INBOX)
    assert got[1].flags == got[2].flags == {"\\Seen", "$Junk"} and got[0].flags == frozenset()
    assert view(got) == fresh(root, INBOX)
    assert first[1].flags == frozenset()  # a listing handed out earlier is not changed under its holder

    box.store_flags(INBOX, [3], {"$Junk"}, "remove")       # keyword only: no file rename
    box.store_flags(INBOX, [4], {"\\Flagged", "Custom1"}, "replace")
    got = box.list(INBOX)
    assert got[2].flags == {"\\Seen"} and got[3].flags == {"\\Flagged", "Custom1"}
    assert view(got) == fresh(root, INBOX)

    appended = box.append(INBOX, msg(99, "appended"), {"\\Draft", "NonJunk"})
    got = box.list(INBOX)
    assert got[-1].uid == appended.uid == 7 and got[-1].flags == {"\\Draft", "NonJunk"}
    assert view(got) == fresh(root, INBOX)

    box.store_flags(INBOX, [1, 5], {"\\Deleted"}, "add")
    assert box.expunge(INBOX, [5]) == [5]                   # UID EXPUNGE of one of them
    assert [m.uid for m in box.list(INBOX)] == [1, 2, 3, 4, 6, 7]
    assert box.expunge(INBOX) == [1]
    assert [m.uid for m in box.list(INBOX)] == [2, 3, 4, 6, 7]
    assert view(box.list(INBOX)) == fresh(root, INBOX)

    box.list("Work")  # cached empty
    assert box.copy(INBOX, [2, 3], "Work") == [(2, 1), (3, 2)]
    work = box.list("Work")
    assert [(m.uid, m.flags) for m in work] == [(1, {"\\Seen", "$Junk"}), (2, {"\\Seen"})]
    assert box.move(INBOX, [4], "Work") == [(4, 3)]
    assert [m.uid for m in box.list(INBOX)] == [2, 3, 6, 7]
    assert [(m.uid, m.flags) for m in box.list("Work")][-1] == (3, {"\\Flagged", "Custom1"})
    assert view(box.list("Work")) == fresh(root, "Work")
    assert view(box.list(INBOX)) == fresh(root, INBOX)

    box.deliver(msg(100))                                  # an LMTP delivery
    assert [m.uid for m in box.list(INBOX)] == [2, 3, 6, 7, 8]
    assert view(box.list(INBOX)) == fresh(root, INBOX)


def test_partial_listings_come_from_the_current_listing(store: Store) -> None:
    box = store.mailbox(ALICE)
    for i in range(8):
        box.deliver(msg(i))
    box.list(INBOX)
    assert [m.uid for m in box.list(INBOX, 3, 5)] == [3, 4, 5]
    box.store_flags(INBOX, [4], {"\\Answered"})
    assert box.get(INBOX, 4).flags == {"\\Answered"}
    box.store_flags(INBOX, [4, 5], {"\\Deleted"})
    box.expunge(INBOX)
    assert [m.uid for m in box.list(INBOX, 3, 6)] == [3, 6]
    assert [m.uid for m in box.list(INBOX, 9)] == []
    box.deliver(msg(9))
    assert [m.uid for m in box.list(INBOX, 9)] == [9]


def test_rename_delete_and_recreate_never_show_another_folders_listing(store: Store) -> None:
    box = store.mailbox(ALICE)
    box.create_folder("Old")
    for i in range(3):
        box.append("Old", msg(i), {"\\Seen"})
    before = view(box.list("Old"))
    box.rename_folder("Old", "New")
    assert view(box.list("New")) == before
    with pytest.raises(NoSuchFolder):
        box.list("Old")
    box.create_folder("Old")
    assert box.list("Old") == []
    box.append("Old", msg(50))
    assert [(m.uid, m.flags) for m in box.list("Old")] == [(1, frozenset())]

    # delete and recreate under the same name (SQLite may hand the folder id out again)
    box.list("New")
    box.delete_folder("New")
    box.create_folder("New")
    assert box.list("New") == []
    # the folder removed by an outside program (no delete_folder: no drop), then made again
    box.append("New", msg(60))
    assert len(box.list("New")) == 1
    os.rename(box.path / ".New", box.path / ".New-gone")
    assert "New" not in [f.name for f in box.folders()]
    box.create_folder("New")
    assert box.list("New") == []

    # RENAME INBOX moves its messages out, INBOX stays and is empty
    for i in range(2):
        box.deliver(msg(i))
    box.list(INBOX)
    box.rename_folder(INBOX, "Archive")
    assert box.list(INBOX) == []
    assert len(box.list("Archive")) == 2


def test_users_never_share_listings(store: Store) -> None:
    a, b = store.mailbox(ALICE), store.mailbox(BOB)
    a.deliver(msg(1))
    a.deliver(msg(2))
    b.deliver(msg(3))
    assert [m.uid for m in a.list(INBOX)] == [1, 2]
    assert [m.uid for m in b.list(INBOX)] == [1]
    b.store_flags(INBOX, [1], {"\\Seen"})
    assert a.get(INBOX, 1).flags == frozenset()
    assert b.get(INBOX, 1).flags == {"\\Seen"}


# --------------------------------------------------------------------------- outside the store

def test_an_outside_mda_and_mutt_writing_the_maildir_are_seen(store: Store) -> None:
    box = store.mailbox(ALICE)
    for i in range(3):
        box.deliver(msg(i))
    box.store_flags(INBOX, [1], {"\\Seen"})
    assert len(box.list(INBOX)) == 3  # cached, patched by our own change
    # an outside MDA delivers (tmp/ then new/)
    (box.path / "tmp" / "1700000000.outside1.host").write_bytes(b"Subject: outside\n\nhi\n")
    os.rename(box.path / "tmp" / "1700000000.outside1.host", box.path / "new" / "1700000000.outside1.host")
    got = box.list(INBOX)
    assert [m.uid for m in got] == [1, 2, 3, 4]
    assert box.read(INBOX, 4) == b"Subject: outside\r\n\r\nhi\r\n"
    # mutt: flags message 2, removes the \Seen of message 1, deletes message 3
    m1, m2, m3 = got[:3]
    cur = box.path / "cur"
    name1 = [n for n in os.listdir(cur) if n.startswith(m1.key)][0]
    os.rename(cur / name1, cur / (m1.key + ":2,"))
    os.rename(box.path / "new" / m2.key, cur / (m2.key + ":2,FS"))
    os.unlink(box.path / "new" / m3.key)
    got = box.list(INBOX)
    assert [(m.uid, m.flags) for m in got] == [(1, frozenset()), (2, {"\\Flagged", "\\Seen"}), (4, frozenset())]
    # and the cache goes on being patched correctly after a sync
    box.store_flags(INBOX, [4], {"\\Answered"})
    assert [(m.uid, m.flags) for m in box.list(INBOX)][-1] == (4, {"\\Answered"})
    assert view(box.list(INBOX)) == fresh(store.root, INBOX)


def test_a_message_replaced_by_an_outside_program_gets_a_new_uid(store: Store) -> None:
    box = store.mailbox(ALICE)
    box.deliver(msg(1, "original"))
    [m] = box.list(INBOX)
    assert b"original" in box.read(INBOX, 1)
    # an editor writes the edited copy under a new name and removes the old file
    os.rename(box.path / "new" / m.key, box.path / "tmp" / "x")
    (box.path / "tmp" / "x").unlink()
    (box.path / "cur" / "1700000001.edited.host:2,S").write_bytes(b"Subject: edited\n\nnew text\n")
    got = box.list(INBOX)
    assert [(i.uid, i.flags) for i in got] == [(2, {"\\Seen"})]
    assert box.read(INBOX, 2) == b"Subject: edited\r\n\r\nnew text\r\n"


def test_changes_by_another_store_on_the_same_root_are_seen(store: Store, root: Path) -> None:
    """Another process with its own Store (and listing cache): every change it commits changes the
    folder's stamp, so this process's cached listing is not used again."""
    box = store.mailbox(ALICE)
    box.create_folder("Other")
    for i in range(4):
        box.deliver(msg(i))
    other = Store(root, hostname="other.test")
    try:
        obox = other.mailbox(ALICE)
        assert len(box.list(INBOX)) == 4
        obox.deliver(msg(10))
        assert [m.uid for m in box.list(INBOX)] == [1, 2, 3, 4, 5]
        obox.store_flags(INBOX, [2], {"\\Seen"})
        assert box.get(INBOX, 2).flags == {"\\Seen"}
        obox.store_flags(INBOX, [3], {"$NonJunk"})          # keyword only: no file renamed
        assert box.get(INBOX, 3).flags == {"$NonJunk"}
        obox.store_flags(INBOX, [1], {"\\Deleted"})
        assert box.get(INBOX, 1).flags == {"\\Deleted"}
        obox.expunge(INBOX)
        assert [m.uid for m in box.list(INBOX)] == [2, 3, 4, 5]
        obox.append(INBOX, msg(11), {"Junk"})
        assert [(m.uid, m.flags) for m in box.list(INBOX)][-1] == (6, {"Junk"})
        obox.move(INBOX, [4], "Other")
        assert [m.uid for m in box.list(INBOX)] == [2, 3, 5, 6]
        assert [m.uid for m in box.list("Other")] == [1]
        obox.copy(INBOX, [2], "Other")
        assert [(m.uid, m.flags) for m in box.list("Other")] == [(1, frozenset()), (2, {"\\Seen"})]
        # and this process's own changes after all that are right too
        box.store_flags(INBOX, [5], {"\\Flagged"})
        assert view(box.list(INBOX)) == view(obox.list(INBOX))
    finally:
        other.close()


def test_folders_deleted_recreated_and_renamed_by_another_store(store: Store, root: Path) -> None:
    box = store.mailbox(ALICE)
    box.create_folder("Last")  # the newest folder: its id is the one SQLite hands out again
    for i in range(3):
        box.append("Last", msg(i, "last"), {"\\Seen"})
    assert len(box.list("Last")) == 3
    fid = folder_id(store, ALICE, "Last")
    other = Store(root, hostname="other.test")
    try:
        obox = other.mailbox(ALICE)
        obox.delete_folder("Last")
        obox.create_folder("Fresh")
        obox.append("Fresh", msg(9, "fresh"))
        with pytest.raises(NoSuchFolder):
            box.list("Last")
        fresh_id = folder_id(store, ALICE, "Fresh")
        got = box.list("Fresh")
        assert fresh_id == fid  # the same id, so only the stamp (UIDVALIDITY) tells them apart
        assert [(m.uid, m.flags) for m in got] == [(1, frozenset())]
        assert b"fresh" in box.read("Fresh", 1)
        box.list("Fresh")
        obox.rename_folder("Fresh", "Renamed")
        assert [m.uid for m in box.list("Renamed")] == [1]
        with pytest.raises(NoSuchFolder):
            box.list("Fresh")
        obox.create_folder("Fresh")
        assert box.list("Fresh") == []
    finally:
        other.close()


def test_a_deletion_synced_by_another_process_first_is_not_hidden_by_the_cache(store: Store, root: Path) -> None:
    """Another process's sync finds a file gone and deletes its row: the folder's stamp must change
    with it, or this process would keep listing the message (and failing to read it) for ever."""
    box = store.mailbox(ALICE)
    for i in range(3):
        box.deliver(msg(i))
    assert [m.uid for m in box.list(INBOX)] == [1, 2, 3]        # cached
    victim = box.get(INBOX, 2)
    os.unlink(box.path / "new" / victim.key)                       # mutt deletes message 2
    # another process (here: a real one) opens the mailbox first; opening syncs every folder
    out = subprocess.run([sys.executable, "-c",
                          "import sys; from mailsift.store.api import Store; "
                          "b = Store(sys.argv[1]).mailbox(sys.argv[2]); print([m.uid for m in b.list('INBOX')])",
                          str(root), ALICE], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[1, 3]"
    assert [m.uid for m in box.list(INBOX)] == [1, 3]
    with pytest.raises(NoSuchMessage):
        box.read(INBOX, 2)


# --------------------------------------------------------------------------- bounds

def test_the_cache_is_bounded_by_messages_and_drops_big_folders(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(ListingCache, "MAX_ROWS", 10)
    monkeypatch.setattr(ListingCache, "MAX_FOLDER", 6)
    box = store.mailbox(ALICE)
    for name, n in (("A", 4), ("B", 4), ("C", 4), ("Big", 7)):
        box.create_folder(name)
        for i in range(n):
            box.append(name, msg(i))
    ids = {name: folder_id(store, ALICE, name) for name in ("A", "B", "C", "Big")}

    def rows() -> int:
        return sum(len(v[1]) for v in store.listings._items.values())

    box.list("Big")
    assert (ALICE, ids["Big"]) not in cached_keys(store)  # over MAX_FOLDER: never kept
    box.list("A")
    box.list("B")
    assert {(ALICE, ids["A"]), (ALICE, ids["B"])} <= cached_keys(store)
    box.list("A")  # A is now the most recently used
    box.list("C")  # 12 rows > 10: the least recently used (B) goes
    assert (ALICE, ids["B"]) not in cached_keys(store)
    assert {(ALICE, ids["A"]), (ALICE, ids["C"])} <= cached_keys(store)
    assert rows() <= 10 and store.listings._rows == rows()
    # patches that grow a folder keep the count right; listings stay correct when evicted
    box.append("A", msg(5))
    box.append("A", msg(6))
    assert store.listings._rows == rows()
    box.store_flags("C", [1, 2], {"\\Deleted"})
    box.expunge("C")
    assert store.listings._rows == rows()
    assert [m.uid for m in box.list("B")] == [1, 2, 3, 4]
    assert [m.uid for m in box.list("C")] == [3, 4]
    assert [m.uid for m in box.list("A")] == [1, 2, 3, 4, 5, 6]
    assert [m.uid for m in box.list("Big")] == list(range(1, 8))
    assert rows() <= 10 and store.listings._rows == rows()


def test_patch_of_an_entry_that_is_not_current_drops_it() -> None:
    cache = ListingCache()
    a = [MessageInfo(1, frozenset(), 0.0, 10, 2, "k1"), MessageInfo(2, frozenset(), 0.0, 10, 3, "k2")]
    cache.put(("u", 1), (7, 3, 3), a)
    assert cache.get(("u", 1), (7, 3, 3)) == a
    assert cache.get(("u", 1), (7, 4, 3)) is None        # any other stamp: a miss
    assert cache.get(("u", 1), (8, 3, 3)) is None
    # a change committed on top of a state the entry does not describe: the entry goes
    cache.patch(("u", 1), (7, 4, 3), (7, 5, 3), changed=[MessageInfo(1, frozenset({"\\Seen"}), 0.0, 10, 5, "k1")])
    assert cache.get(("u", 1), (7, 3, 3)) is None and cache.get(("u", 1), (7, 5, 3)) is None
    assert cache._rows == 0
    # patching an absent entry makes none
    cache.patch(("u", 2), (7, 3, 3), (7, 4, 3), changed=a)
    assert cache.get(("u", 2), (7, 4, 3)) is None
    # a current entry: replaced, inserted in order, appended, removed
    cache.put(("u", 1), (7, 3, 3), a)
    cache.patch(("u", 1), (7, 3, 3), (7, 6, 6),
                changed=[MessageInfo(5, frozenset(), 0.0, 1, 6, "k5"), MessageInfo(2, frozenset({"x"}), 0.0, 10, 4, "k2")],
                removed=[1])
    got = cache.get(("u", 1), (7, 6, 6))
    assert [(m.uid, m.flags) for m in got] == [(2, {"x"}), (5, frozenset())]
    assert a[1].flags == frozenset()  # the list first put is untouched
    assert cache._rows == 2


# --------------------------------------------------------------------------- threads

def test_concurrent_changes_and_listings_agree_with_the_index(store: Store, root: Path) -> None:
    box = store.mailbox(ALICE)
    for i in range(40):
        box.deliver(msg(i))
    errors: list[BaseException] = []

    def changer(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(60):
                uids = rnd.sample(range(1, 41), 3)
                flag = rnd.choice(["\\Seen", "\\Flagged", "$Junk", "Kw%d" % seed])
                box.store_flags(INBOX, uids, {flag}, rnd.choice(["add", "remove"]))
                if rnd.random() < 0.1:
                    box.append(INBOX, msg(rnd.randint(100, 999)))
                box.list(INBOX)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(150):
                infos = box.list(INBOX)
                uids = [m.uid for m in infos]
                assert uids == sorted(set(uids))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=changer, args=(s,)) for s in range(3)] + [threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert view(box.list(INBOX)) == fresh(root, INBOX)


def test_a_folder_of_half_the_bound_is_kept_and_one_above_it_is_not() -> None:
    """A 100,000-message INBOX stays in memory (perf: each SELECT of it read and rebuilt every
    row, 0.21 s of CPU, bench/results/2026-12-08-imap_big-select-ab.txt), but no one folder
    takes more than half the cache."""
    cache = ListingCache()
    assert ListingCache.MAX_FOLDER * 2 == ListingCache.MAX_ROWS
    m = MessageInfo(1, frozenset(), 0.0, 10, 1, "k")
    big = [m] * 100_000
    cache.put((ALICE, 1), (1, 1, 2), big)
    assert cache.get((ALICE, 1), (1, 1, 2)) is big
    cache.put((ALICE, 2), (1, 1, 2), [m] * (ListingCache.MAX_FOLDER + 1))
    assert cache.get((ALICE, 2), (1, 1, 2)) is None
    assert cache.get((ALICE, 1), (1, 1, 2)) is big  # the refused one evicted nothing


def test_listings_are_read_with_the_collector_paused_and_it_runs_again_after(store: Store, monkeypatch) -> None:
    """An uncached listing is read and made with cyclic garbage collection off (listing.gc_paused);
    the collector is on again once the last of several threads reading at once has finished,
    and stays off when it was off before. The listing is the same as a fresh Store reads."""
    import gc

    from mailsift.store import listing

    box = store.mailbox(ALICE)
    for i in range(40):
        box.deliver(msg(i), folder=INBOX)
    box.store_flags(INBOX, [3, 5], ["\\Seen", "$Work"], "add")
    seen: list[bool] = []
    real_rows = type(box._db).listing_rows

    def rows(db, *args):  # records the collector's state while the index rows are read
        seen.append(gc.isenabled())
        return real_rows(db, *args)

    monkeypatch.setattr(type(box._db), "listing_rows", rows)
    assert gc.isenabled()
    first = box.list(INBOX)
    assert seen == [False] and gc.isenabled()
    assert [type(m) for m in first] == [MessageInfo] * 40
    other = Store(store.root, hostname="other")
    try:
        assert first == other.mailbox(ALICE).list(INBOX)
    finally:
        other.close()
    assert first[2].flags == frozenset({"\\Seen", "$Work"}) and first[2]._asdict()["uid"] == 3

    with inside_another_thread(listing.gc_paused):
        with listing.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the other thread is still inside
    assert gc.isenabled()

    gc.disable()
    try:
        with listing.gc_paused():
            pass
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
