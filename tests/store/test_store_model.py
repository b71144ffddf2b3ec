"""The store against a simple model: random sequences of deliver, append, flags, copy, move,
expunge, reopen and outside deletions. Invariants: UIDs unique, ascending, never reused within a
UIDVALIDITY; contents and flags as the model says; the files on disk are exactly the indexed ones
(tmp/ holds nothing but expunged files waiting for the background unlink, and those go)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mailsift.store import maildir as md
from mailsift.store.api import INBOX, Store

FOLDERS = [INBOX, "Junk", "Trash", "Work"]
FLAGS = ["\\Seen", "\\Flagged", "\\Answered", "\\Deleted", "\\Draft", "$Junk", "$NonJunk", "$Forwarded"]
USER = "model@example.test"


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="mailsift-model-"))
        self.store = Store(self.dir)
        self.box = self.store.mailbox(USER)
        self.box.create_folder("Work")
        # model: folder -> {uid: (content, flags)}; highest uid ever seen per folder
        self.model: dict[str, dict[int, tuple[bytes, frozenset[str]]]] = {f: {} for f in FOLDERS}
        self.high: dict[str, int] = {f: 0 for f in FOLDERS}
        self.uidvalidity = {f: self.box.folder(f).uidvalidity for f in FOLDERS}
        self.n = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _new_uid(self, folder: str, uid: int) -> None:
        assert uid > self.high[folder], (folder, uid, self.high[folder])
        self.high[folder] = uid

    def _content(self) -> bytes:
        self.n += 1
        return b"Subject: m%d\r\n\r\n%s\r\n" % (self.n, b".x\r\n" * (self.n % 3))

    @rule(folder=st.sampled_from(FOLDERS))
    def deliver(self, folder: str) -> None:
        data = self._content()
        d = self.box.deliver(data, folder=folder)
        self._new_uid(folder, d.uid)
        self.model[folder][d.uid] = (data, frozenset())

    @rule(folder=st.sampled_from(FOLDERS), flags=st.sets(st.sampled_from(FLAGS), max_size=3))
    def append(self, folder: str, flags: set[str]) -> None:
        data = self._content()
        info = self.box.append(folder, data, flags)
        self._new_uid(folder, info.uid)
        self.model[folder][info.uid] = (data, frozenset(flags))

    def _pick(self, folder: str, data: st.DataObject) -> list[int]:
        uids = sorted(self.model[folder])
        if not uids:
            return []
        return data.draw(st.lists(st.sampled_from(uids), max_size=4, unique=True))

    @rule(folder=st.sampled_from(FOLDERS), flags=st.sets(st.sampled_from(FLAGS), max_size=3),
          mode=st.sampled_from(["add", "remove", "replace"]), data=st.data())
    def store_flags(self, folder: str, flags: set[str], mode: str, data: st.DataObject) -> None:
        uids = self._pick(folder, data)
        self.box.store_flags(folder, uids, flags, mode)  # type: ignore[arg-type]
        for uid in uids:
            content, old = self.model[folder][uid]
            new = old | flags if mode == "add" else old - flags if mode == "remove" else frozenset(flags)
            self.model[folder][uid] = (content, frozenset(new))

    @rule(src=st.sampled_from(FOLDERS), dst=st.sampled_from(FOLDERS), move=st.booleans(), data=st.data())
    def copy_or_move(self, src: str, dst: str, move: bool, data: st.DataObject) -> None:
        uids = sorted(self._pick(src, data))
        pairs = (self.box.move if move else self.box.copy)(src, uids, dst)
        assert [p[0] for p in pairs] == uids
        for s_uid, d_uid in pairs:
            self._new_uid(dst, d_uid)
            self.model[dst][d_uid] = self.model[src][s_uid]
            if move:
                del self.model[src][s_uid]

    @rule(folder=st.sampled_from(FOLDERS), only=st.booleans(), data=st.data())
    def expunge(self, folder: str, only: bool, data: st.DataObject) -> None:
        uids = self._pick(folder, data) if only else None
        gone = self.box.expunge(folder, uids)
        expected = sorted(u for u, (_c, f) in self.model[folder].items()
                          if "\\Deleted" in f and (uids is None or u in uids))
        assert gone == expected
        for u in gone:
            del self.model[folder][u]

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = Store(self.dir)
        self.box = self.store.mailbox(USER)

    @precondition(lambda self: any(self.model.values()))
    @rule(data=st.data())
    def outside_delete(self, data: st.DataObject) -> None:
        """Another program (mutt) deletes a file."""
        folder = data.draw(st.sampled_from([f for f in FOLDERS if self.model[f]]))
        uid = data.draw(st.sampled_from(sorted(self.model[folder])))
        fpath = self.box.path if folder == INBOX else self.box.path / f".{folder}"
        key = self.box.get(folder, uid).key
        for sub in ("new", "cur"):
            for name in os.listdir(fpath / sub):
                if name.split(":2,")[0] == key:
                    os.unlink(fpath / sub / name)
        del self.model[folder][uid]

    @invariant()
    def matches_model(self) -> None:
        for folder in FOLDERS:
            infos = self.box.list(folder)
            uids = [m.uid for m in infos]
            assert uids == sorted(self.model[folder]), (folder, uids, sorted(self.model[folder]))
            for m in infos:
                content, flags = self.model[folder][m.uid]
                assert m.flags == flags, (folder, m.uid, m.flags, flags)
                assert m.size == len(content)
            assert self.box.folder(folder).uidvalidity == self.uidvalidity[folder]
            assert self.box.folder(folder).uidnext > self.high[folder]

    @invariant()
    def files_are_the_index(self) -> None:
        for folder in FOLDERS:
            fpath = self.box.path if folder == INBOX else self.box.path / f".{folder}"
            on_disk = sorted(n.split(":2,")[0] for sub in ("new", "cur") for n in os.listdir(fpath / sub))
            assert on_disk == sorted(m.key for m in self.box.list(folder))
            # (expunged files wait in tmp/ for the store's background unlink, and only they)
            assert [n for n in os.listdir(fpath / "tmp") if not n.startswith(md.EXPUNGED_PREFIX)] == []
        assert self.store.unlinker.wait_idle(10)
        for folder in FOLDERS:
            fpath = self.box.path if folder == INBOX else self.box.path / f".{folder}"
            assert os.listdir(fpath / "tmp") == []

    @rule(data=st.data())
    def contents(self, data: st.DataObject) -> None:
        folder = data.draw(st.sampled_from(FOLDERS))
        for uid, (content, _f) in self.model[folder].items():
            assert self.box.read(folder, uid) == content


TestStoreModel = StoreModel.TestCase
TestStoreModel.settings = settings(max_examples=25, stateful_step_count=30, deadline=None)
