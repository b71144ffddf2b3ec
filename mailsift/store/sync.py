"""The Maildir sync: bring the index in line with the files other programs (mutt, Dovecot) or
a crash left behind. It scans the mailbox for folders, a folder's new/ and cur/ for messages
(new files are adopted with the next UIDs, vanished ones expunged, renamed ones change
flags) and tmp/ for files committed to the index but not yet renamed (rolled forward) or
abandoned by a dead writer (removed). The caller (api.Mailbox) holds the mailbox lock,
decides when a folder needs a sync and publishes the changes found as events.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Callable, NamedTuple

from mailsift.store import maildir as md
from mailsift.store import vanished
from mailsift.store.indexdb import IndexDB
from mailsift.store.names import INBOX, folder_from_dirname

log = logging.getLogger("mailsift.store")

_ABANDONED_AGE = 36 * 3600  # seconds after which any file left in tmp/ is removed


class Changes(NamedTuple):
    """What a folder sync committed: expunged UIDs; (uid, subdir, name, new letters, old
    letters, keywords) of renamed files; (uid, letters) of adopted files."""

    gone: list[int]
    changed: list[tuple[int, str, str, str, str, str]]
    added: list[tuple[int, str]]


def folders_on_disk(path: Path) -> set[str]:
    """The folders of the Maildir++ in `path` (INBOX always), from its directories."""
    on_disk = {INBOX}
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            name = folder_from_dirname(entry.name)
            if name is not None and md.is_maildir(Path(entry.path)):
                on_disk.add(name)
    return on_disk


def recover_tmp(db: IndexDB, fpath: Path, fid: int, user: str, folder: str) -> None:
    """Roll forward files committed to the index but still in tmp/ (a crash between commit and
    rename); remove our own abandoned tmp files (their writer died before committing)."""
    tmpdir = fpath / "tmp"
    try:
        entries = list(os.scandir(tmpdir))
    except FileNotFoundError:
        return
    now = time.time()
    for entry in entries:
        if entry.name.startswith(md.EXPUNGED_PREFIX):  # expunged; its unlink never came (a crash)
            md.unlink_quietly(entry.path)
            continue
        row = db.file_by_key(fid, entry.name)
        if row is not None:
            target = fpath / row[0] / row[1]
            if not target.exists():
                os.rename(entry.path, target)
                md.fsync_dir(target.parent)
                log.info("%s: recovered %s/%s from tmp/", user, folder, entry.name)
                continue
        m = re.search(r"P(\d+)Q\d+", entry.name)
        mine_dead = m is not None and (int(m.group(1)) == os.getpid() or not _pid_alive(int(m.group(1))))
        try:
            old = now - entry.stat().st_mtime > _ABANDONED_AGE
        except FileNotFoundError:
            continue
        if mine_dead or old:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                pass


def scan(fpath: Path, folder: str) -> dict[str, tuple[str, str]]:
    """{Maildir key: (subdir, file name)} of the messages in new/ and cur/ (a missing one is
    created again)."""
    files: dict[str, tuple[str, str]] = {}
    for sub in ("new", "cur"):
        try:
            it = os.scandir(fpath / sub)
        except FileNotFoundError:
            md.ensure_maildir(fpath, folder=folder != INBOX)
            continue
        with it:
            for entry in it:
                if entry.name.startswith("."):
                    continue
                key, _info = md.parse_name(entry.name)
                files[key] = (sub, entry.name)
    return files


def sync_folder(db: IndexDB, fpath: Path, folder: str, frow: sqlite3.Row, mtimes: tuple[int, int],
                before_change: Callable[[], None]) -> Changes | None:
    """Compare the folder's files with its index rows and commit the differences (new UIDs,
    expunges, flags from renamed files, and the directory mtimes they were found at) in one
    transaction; `before_change` runs first when there are any. Returns what changed, or
    None when the index already matched the files (then nothing is written)."""
    fid = frow["id"]
    files = scan(fpath, folder)
    known: set[str] = set()
    gone: list[int] = []
    changed: list[tuple[int, str, str, str, str, str]] = []
    for uid, key, subdir, fname, sysflags, keywords in db.sync_rows(fid):
        known.add(key)
        found = files.get(key)
        if found is None:
            tmp = fpath / "tmp" / key
            target = fpath / subdir / fname
            if tmp.exists() and not target.exists():
                try:
                    os.rename(tmp, target)  # committed but not yet renamed: roll forward
                except FileNotFoundError:
                    pass  # its writer just renamed it
            if target.exists():
                continue
            gone.append(uid)
        elif found != (subdir, fname):
            letters = md.parse_name(found[1])[1] or ""
            letters = md.info_letters(md.flags_from_letters(letters))
            changed.append((uid, found[0], found[1], letters, sysflags, keywords))
    added = sorted((k for k in files if k not in known), key=lambda k: (_mtime(fpath, *files[k]), _name_order(k)))
    if not (gone or changed or added):
        return None
    new_uids: list[tuple[int, str]] = []
    before_change()
    with db.txn():
        # An expunge found here bumps HIGHESTMODSEQ too: other processes' cached
        # listings of this folder (stamp-checked) must not outlive it.
        modseq = frow["highestmodseq"] + (1 if gone else 0)
        for uid in gone:
            db.delete(fid, uid)
        if gone:
            vanished.prune(db.conn, fid)
        for uid, sub, fname, letters, _old, _kw in changed:
            modseq += 1
            db.update_file(fid, uid, sub, fname, letters, modseq)
        uid_next = frow["uidnext"]
        for key in added:
            sub, fname = files[key]
            try:
                st = os.stat(fpath / sub / fname)
            except FileNotFoundError:
                continue
            _s, w = md.sizes_from_key(key)
            if w is None:
                with open(fpath / sub / fname, "rb") as fh:
                    w = md.crlf_size(fh.read())
            letters = md.info_letters(md.flags_from_letters(md.parse_name(fname)[1] or ""))
            modseq += 1
            # saved when its file last changed directory (ctime: a rename into this folder counts)
            db.insert((fid, uid_next, key, sub, fname, letters, "", st.st_mtime, w, modseq, st.st_ctime))
            new_uids.append((uid_next, letters))
            uid_next += 1
        db.set_synced(fid, mtimes, uid_next, modseq)
    return Changes(gone, changed, new_uids)


_DIGITS_RE = re.compile(r"(\d+)")


def _name_order(key: str) -> list[tuple[int, int | str]]:
    """A Maildir base name's place among files of the same mtime: its numbers as numbers, so
    that `T.M572P9Q0` (T seconds, 572 microseconds, delivery 0 of process 9) comes before
    `T.M2696P9Q1` as it was delivered (file times tick every few milliseconds: deliveries in
    one tick tie on mtime, and compared as text "M2696" < "M572")."""
    return [(1, int(part)) if i % 2 else (0, part) for i, part in enumerate(_DIGITS_RE.split(key))]


def _mtime(fpath: Path, sub: str, name: str) -> float:
    try:
        return os.stat(fpath / sub / name).st_mtime
    except FileNotFoundError:
        return 0.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
