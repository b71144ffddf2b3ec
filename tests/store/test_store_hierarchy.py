"""Folder hierarchy in the store: RENAME of a parent without a folder of its own (IMAP LIST:
\\Noselect), which renames its inferiors (RFC 3501 / RFC 9051 6.3.5), and the refusals that keep
names inside the mail root and INBOX as it is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsift.store.api import INBOX, FolderExists, NoSuchFolder, Store, StoreError
from mailsift.store.events import Event
from mailsift.store.names import InvalidName

USER = "alice@example.test"


def msg(i: int) -> bytes:
    return b"From: a@example.test\r\nSubject: %d\r\n\r\nbody %d\r\n" % (i, i)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mail", hostname="test.host")
    yield s
    s.close()


def names(box) -> set[str]:
    return {f.name for f in box.folders()}


def tree(root: Path) -> list[str]:
    """Every path under the mail root's parent (what a rename may touch)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if "mailsift-index" not in p.name)


def test_rename_a_deleted_parent_renames_its_inferiors(store: Store) -> None:
    box = store.mailbox(USER)
    box.create_folder("a")
    box.create_folder("a.b")
    box.create_folder("a.b.c")
    uid = box.append("a.b.c", msg(1), flags={"\\Seen"}).uid
    uv = box.folder("a.b.c").uidvalidity
    box.set_subscribed("a")
    box.set_subscribed("a.b.c")
    box.delete_folder("a")                          # a: \Noselect, a parent only
    assert "a" not in names(box)
    seen: list[Event] = []
    store.subscribe(seen.append)
    box.rename_folder("a", "z")
    got = names(box)
    assert {"z.b", "z.b.c"} <= got and not {n for n in got if n == "a" or n.startswith("a.")}
    assert "z" not in got                           # still a parent only: no folder revived
    assert not (box.path / ".z").exists() and not (box.path / ".a.b").exists()
    assert (box.path / ".z.b.c" / "maildirfolder").exists()
    assert box.folder("z.b.c").uidvalidity == uv
    assert [(m.uid, m.flags) for m in box.list("z.b.c")] == [(uid, {"\\Seen"})]
    assert box.read("z.b.c", uid) == msg(1)
    with pytest.raises(NoSuchFolder):
        box.list("z")
    assert {"z", "z.b.c"} <= set(box.subscriptions()) and not {"a", "a.b.c"} & set(box.subscriptions())
    assert sorted((e.kind, e.old_name, e.folder) for e in seen) == [
        ("folder-renamed", "a.b", "z.b"), ("folder-renamed", "a.b.c", "z.b.c")]


def test_rename_a_level_that_only_its_inferiors_make(store: Store) -> None:
    """A parent that was never a folder (another program made `.h.x` alone)."""
    box = store.mailbox(USER)
    (box.path / ".h.x" / "cur").mkdir(parents=True)
    for sub in ("new", "tmp"):
        (box.path / ".h.x" / sub).mkdir()
    (box.path / ".h.x" / "maildirfolder").touch()
    assert "h.x" in names(box) and "h" not in names(box)
    box.append("h.x", msg(2))
    box.rename_folder("h", "g")
    assert "g.x" in names(box) and "h.x" not in names(box) and "g" not in names(box)
    assert len(box.list("g.x")) == 1
    # into a deeper place: the level moves with all it holds
    box.rename_folder("g", "deep.er")
    assert "deep.er.x" in names(box) and len(box.list("deep.er.x")) == 1


def test_rename_of_a_parent_is_all_or_nothing_and_stays_in_the_root(store: Store) -> None:
    box = store.mailbox(USER)
    for n in ("p", "p.one", "p.two", "q", "q.two"):
        box.create_folder(n)
    box.delete_folder("p")
    before = tree(store.root)
    with pytest.raises(FolderExists):               # q.two is there: p.one must not move either
        box.rename_folder("p", "q")
    with pytest.raises(FolderExists):
        box.rename_folder("p", "p")
    with pytest.raises(StoreError):
        box.rename_folder("p", "p.inner")
    with pytest.raises(NoSuchFolder):
        box.rename_folder("nothing", "else")
    with pytest.raises(FolderExists):
        box.rename_folder("p", INBOX)
    for bad in ("INBOX.p", "../escape", "p/../../x", "..", "p..x", ".hidden", "x\x00y"):
        with pytest.raises(InvalidName):
            box.rename_folder("p", bad)
    with pytest.raises(InvalidName):                # an inferior's new name would be too long
        box.rename_folder("p", "n" * 252)
    assert tree(store.root) == before
    assert {"p.one", "p.two", "q", "q.two"} <= names(box)
    assert not any(e.startswith("escape") for e in os.listdir(store.root))


def test_create_makes_no_superior_a_folder_and_never_revives_one(store: Store) -> None:
    box = store.mailbox(USER)
    box.create_folder("a.b.c")
    assert "a.b.c" in names(box) and not {"a", "a.b"} & names(box)
    assert not (box.path / ".a").exists() and not (box.path / ".a.b").exists()
    with pytest.raises(NoSuchFolder):
        box.list("a.b")
    with pytest.raises(FolderExists):
        box.create_folder("a.b.c")
    box.create_folder("d")
    box.create_folder("d.x")
    box.delete_folder("d")                          # d: a parent only
    box.create_folder("d.b.c")
    assert "d" not in names(box) and not (box.path / ".d").exists()
    with pytest.raises(NoSuchFolder):
        box.list("d")
    uv = box.create_folder("d").uidvalidity         # its own name makes it a folder again
    assert box.list("d") == [] and box.folder("d").uidvalidity == uv
    box.rename_folder("a.b.c", "m.n.o")             # no folder for m, m.n either
    assert "m.n.o" in names(box) and not {"m", "m.n"} & names(box)
    box.create_folder("y")
    box.rename_folder("y", "m")                     # m was only a parent: it becomes the folder
    assert {"m", "m.n.o"} <= names(box)
