"""IndexDB: every SQL statement of one mailbox's index (index.py opens the file and owns its
schema). Folders (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, special use, directory mtimes),
messages (UID, file, flags, keywords, internal date, size, modseq, save date), subscriptions, the
\\Recent floor and the delivery records. It knows nothing of files, locks or events: the
caller (api.Mailbox) holds the mailbox lock and opens a transaction with txn() around writes.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from mailsift.store import index as idx

_BY_UID_MAX = 2000  # above this many UIDs, one scan of the folder's rows beats lookups by key
_FOLDER_COLS = "id, name, uidvalidity, uidnext, highestmodseq, special_use, mtime_new, mtime_cur"
_FOLDER_INDEX = {c: i for i, c in enumerate(_FOLDER_COLS.split(", "))}
_INSERT_MESSAGE = ("INSERT INTO messages (folder_id, uid, key, subdir, name, sysflags, keywords, "
                   "internal_date, size, modseq, save_date) VALUES (?,?,?,?,?,?,?,?,?,?,?)")

MessageRow = tuple[int, int, str, str, str, str, str, float, int, int, float]
"""(folder_id, uid, key, subdir, name, sysflags, keywords, internal_date, size, modseq, save_date)"""


class IndexDB:
    """One open index (a SQLite connection in autocommit mode; see index.connect)."""

    def __init__(self, path: Path, timeout: float, rebuild: bool = False) -> None:
        """Open (or create) the index of the mailbox in `path`; `rebuilt` tells whether it was
        missing or broken and must be repopulated from the files (index.connect)."""
        self.conn, self.rebuilt = idx.connect(path, timeout, rebuild=rebuild)
        self._durable = True  # PRAGMA synchronous=FULL (index.connect), else NORMAL
        self._autocheckpoint = True  # PRAGMA wal_autocheckpoint=WAL_AUTOCHECKPOINT (index.connect), else 0
        self.unchecked = 0    # commits made with checkpoint=False since the last other one
        # called with False as each write transaction begins and with True once it has
        # committed or rolled back (api.Mailbox: the mailbox lock's change counter, locks.py)
        self.on_change: Callable[[bool], None] | None = None
        self._folder_cursor: sqlite3.Cursor | None = None  # (folder(): its description names the columns)
        # The index has the QRESYNC tombstones' table (store/vanished.py), as last found on this
        # connection: once true it stays true for the connection's life (nothing drops the
        # table; a rebuilt or replaced index is opened on a new connection, a new IndexDB).
        self.vanished_tracked = False

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def txn(self, durable: bool = True, checkpoint: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction. durable=False (flag changes and expunges only) commits without
        fsyncing the WAL (SQLite synchronous=NORMAL): an application crash loses nothing, a power
        loss or OS crash can lose the last such commits not followed by a durable one. Their
        files were already renamed or removed, so the next sync recovers system flags and
        expunges from the files; only keyword changes and modseqs of those last commits are lost.
        (perf: saves one fsync per STORE/EXPUNGE; see docs/imap.md.) The connection keeps the
        setting of its last transaction and switches only when the next one wants the other
        (perf: two PRAGMA statements fewer per STORE or EXPUNGE); every write is made in a
        transaction, so no write runs with the wrong one.
        checkpoint=False: this commit never runs SQLite's automatic WAL checkpoint (two fsyncs),
        for a commit made on an event loop's thread; the next commit with checkpoint=True runs
        it when it is due (`unchecked` counts the commits since). As with `synchronous`, the
        connection keeps `wal_autocheckpoint` (0 or WAL_AUTOCHECKPOINT) as its last
        transaction wanted it and switches only when the next wants the other (perf: a run of
        event-loop commits made two PRAGMA statements each).
        `on_change(False)` is called before BEGIN, `on_change(True)` once the transaction
        has ended (committed, rolled back, or never begun)."""
        db = self.conn
        if durable != self._durable:
            db.execute("PRAGMA synchronous=FULL" if durable else "PRAGMA synchronous=NORMAL")
            self._durable = durable
        if checkpoint != self._autocheckpoint:
            db.execute(f"PRAGMA wal_autocheckpoint={idx.WAL_AUTOCHECKPOINT if checkpoint else 0}")
            self._autocheckpoint = checkpoint
        changed = self.on_change
        if changed is not None:
            changed(False)
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            if checkpoint:
                self.unchecked = 0
            else:
                self.unchecked += 1
        finally:
            if changed is not None:
                changed(True)

    # ------------------------------------------------------------------ folders
    def folder(self, name: str) -> sqlite3.Row | None:
        """The folder's row (columns of _FOLDER_COLS, by name), or None."""
        cur = self.conn.execute(f"SELECT {_FOLDER_COLS} FROM folders WHERE name = ?", (name,))
        cur.row_factory = sqlite3.Row
        self._folder_cursor = cur
        return cur.fetchone()

    def folder_with(self, row: sqlite3.Row, **changed: int) -> sqlite3.Row:
        """A folder row (from folder()) with these columns set to these values: the row as a
        change this connection has just committed left it, without reading it again."""
        values = list(row)
        for column, value in changed.items():
            values[_FOLDER_INDEX[column]] = value
        cur = self._folder_cursor
        if cur is None:
            cur = self._folder_cursor = self.conn.execute(f"SELECT {_FOLDER_COLS} FROM folders LIMIT 0")
        return sqlite3.Row(cur, tuple(values))

    def folder_stamp(self, name: str) -> tuple[int, int, int, int] | None:
        """(id, uidvalidity, highestmodseq, uidnext) of the folder, or None: a plain tuple
        (perf: the per-command stamp check in IMAP workers; a sqlite3.Row cost more than the
        lookup)."""
        return self.conn.execute("SELECT id, uidvalidity, highestmodseq, uidnext FROM folders WHERE name = ?",
                                 (name,)).fetchone()

    def folder_rows(self) -> list[sqlite3.Row]:
        cur = self.conn.execute("SELECT id, name, uidvalidity, uidnext, highestmodseq, special_use FROM folders")
        cur.row_factory = sqlite3.Row
        return cur.fetchall()

    def folder_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM folders ORDER BY name")]

    def folder_mtimes(self) -> dict[int, tuple[int, int]]:
        """{folder id: (mtime of new/, mtime of cur/)} as last synced."""
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT id, mtime_new, mtime_cur FROM folders")}

    def has_children(self, name: str, separator: str) -> bool:
        prefix = name + separator
        return self.conn.execute("SELECT 1 FROM folders WHERE substr(name, 1, ?) = ? LIMIT 1",
                                 (len(prefix), prefix)).fetchone() is not None

    def select_extras(self, name: str, separator: str, fid: int, uidvalidity: int) -> tuple[int, int, int]:
        """(subscribed, has children, \\Recent floor) of a folder in one statement (perf: SELECT
        asked is_subscribed(), has_children() and recent_floor() one after the other)."""
        prefix = name + separator
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE name = ?), "
            "EXISTS (SELECT 1 FROM folders WHERE substr(name, 1, ?) = ?), "
            "coalesce((SELECT floor FROM recent WHERE folder_id = ? AND uidvalidity = ?), 0)",
            (name, len(prefix), prefix, fid, uidvalidity)).fetchone()

    def special_folder(self, special_use: str) -> str | None:
        row = self.conn.execute("SELECT name FROM folders WHERE special_use = ? ORDER BY id LIMIT 1",
                                (special_use,)).fetchone()
        return row[0] if row else None

    def add_folder(self, name: str, uidvalidity: int, special_use: str | None) -> None:
        self.conn.execute("INSERT INTO folders (name, uidvalidity, special_use) VALUES (?, ?, ?)",
                          (name, uidvalidity, special_use))

    def remove_folder(self, fid: int) -> None:
        """The folder's row and its messages' (in a transaction)."""
        self.conn.execute("DELETE FROM messages WHERE folder_id = ?", (fid,))
        self.conn.execute("DELETE FROM folders WHERE id = ?", (fid,))

    def rename_folder(self, src: str, dst: str) -> None:
        """Rename a folder row, carrying its subscription along (in a transaction)."""
        self.conn.execute("UPDATE folders SET name = ? WHERE name = ?", (dst, src))
        if self.conn.execute("DELETE FROM subscriptions WHERE name = ?", (src,)).rowcount:
            self.conn.execute("INSERT OR IGNORE INTO subscriptions VALUES (?)", (dst,))

    def set_counters(self, fid: int, uidnext: int, modseq: int) -> None:
        self.conn.execute("UPDATE folders SET uidnext=?, highestmodseq=? WHERE id=?", (uidnext, modseq, fid))

    def set_modseq(self, fid: int, modseq: int) -> None:
        self.conn.execute("UPDATE folders SET highestmodseq=? WHERE id=?", (modseq, fid))

    def set_synced(self, fid: int, mtimes: tuple[int, int], uidnext: int | None = None,
                   modseq: int | None = None) -> None:
        """Record the directory mtimes the folder was synced at (and its new counters)."""
        if uidnext is None or modseq is None:
            self.conn.execute("UPDATE folders SET mtime_new=?, mtime_cur=? WHERE id=?", (mtimes[0], mtimes[1], fid))
        else:
            self.conn.execute("UPDATE folders SET uidnext=?, highestmodseq=?, mtime_new=?, mtime_cur=? WHERE id=?",
                              (uidnext, modseq, mtimes[0], mtimes[1], fid))

    # ------------------------------------------------------------------ subscriptions
    def subscriptions(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT name FROM subscriptions ORDER BY name")]

    def is_subscribed(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM subscriptions WHERE name = ?", (name,)).fetchone() is not None

    def subscribe(self, name: str) -> None:
        self.conn.execute("INSERT OR IGNORE INTO subscriptions VALUES (?)", (name,))

    def unsubscribe(self, name: str) -> None:
        self.conn.execute("DELETE FROM subscriptions WHERE name = ?", (name,))

    # ------------------------------------------------------------------ messages
    def sync_rows(self, fid: int) -> list[tuple[int, str, str, str, str, str]]:
        """(uid, key, subdir, name, sysflags, keywords) of every message of the folder."""
        return self.conn.execute("SELECT uid, key, subdir, name, sysflags, keywords FROM messages WHERE folder_id = ?",
                                 (fid,)).fetchall()

    def rows_by_uid(self, fid: int, cols: str, wanted: set[int], extra: str = "") -> list[tuple]:
        """The rows of these UIDs (ascending), by primary key: a STORE/COPY/MOVE/EXPUNGE of a few
        messages no longer reads every row of the folder (perf: see docs/imap.md). Large
        sets read the folder once and filter, as before."""
        if len(wanted) > _BY_UID_MAX:
            rows = self.conn.execute(f"SELECT {cols} FROM messages WHERE folder_id = ?{extra} ORDER BY uid",
                                     (fid,)).fetchall()
            return [r for r in rows if r[0] in wanted]
        out: list[tuple] = []
        ordered = sorted(wanted)
        for i in range(0, len(ordered), 500):
            chunk = ordered[i:i + 500]
            out += self.conn.execute(
                f"SELECT {cols} FROM messages WHERE folder_id = ? AND uid IN ({','.join('?' * len(chunk))}){extra} "
                "ORDER BY uid", (fid, *chunk)).fetchall()
        return out

    def deleted_rows(self, fid: int) -> list[tuple[int, str, str]]:
        """(uid, subdir, name) of the messages flagged \\Deleted, ascending UID."""
        return self.conn.execute("SELECT uid, subdir, name FROM messages WHERE folder_id = ? "
                                 "AND instr(sysflags, 'T') > 0 ORDER BY uid", (fid,)).fetchall()

    def listing_rows(self, fid: int, uid_min: int,
                     uid_max: int) -> list[tuple[int, str, str, float, int, int, str, float | None]]:
        """(uid, sysflags, keywords, internal_date, size, modseq, key, save_date), ascending UID."""
        return self.conn.execute(
            "SELECT uid, sysflags, keywords, internal_date, size, modseq, key, save_date FROM messages "
            "WHERE folder_id = ? AND uid >= ? AND uid <= ? ORDER BY uid", (fid, uid_min, uid_max)).fetchall()

    def status(self, fid: int) -> tuple[int, int, int, int]:
        """(messages, unseen, deleted, total size) of the folder."""
        return self.conn.execute(
            "SELECT count(*), coalesce(sum(instr(sysflags,'S') = 0),0), coalesce(sum(instr(sysflags,'T') > 0),0), "
            "coalesce(sum(size),0) FROM messages WHERE folder_id = ?", (fid,)).fetchone()

    def file_by_key(self, fid: int, key: str) -> tuple[str, str] | None:
        """(subdir, name) of the message with this Maildir key, or None."""
        return self.conn.execute("SELECT subdir, name FROM messages WHERE folder_id = ? AND key = ?",
                                 (fid, key)).fetchone()

    def has_key(self, fid: int, key: str) -> bool:
        return self.conn.execute("SELECT 1 FROM messages WHERE folder_id=? AND key=?", (fid, key)).fetchone() is not None

    def file_by_uid(self, fid: int, uid: int) -> tuple[str, str, str] | None:
        """(subdir, name, key) of the message, or None."""
        return self.conn.execute("SELECT subdir, name, key FROM messages WHERE folder_id = ? AND uid = ?",
                                 (fid, uid)).fetchone()

    def insert(self, row: MessageRow) -> None:
        self.conn.execute(_INSERT_MESSAGE, row)

    def update_file(self, fid: int, uid: int, subdir: str, name: str, sysflags: str, modseq: int) -> None:
        self.conn.execute("UPDATE messages SET subdir=?, name=?, sysflags=?, modseq=? WHERE folder_id=? AND uid=?",
                          (subdir, name, sysflags, modseq, fid, uid))

    def update_flags(self, fid: int, uid: int, subdir: str, name: str, sysflags: str, keywords: str,
                     modseq: int) -> None:
        self.conn.execute("UPDATE messages SET subdir=?, name=?, sysflags=?, keywords=?, modseq=? "
                          "WHERE folder_id=? AND uid=?", (subdir, name, sysflags, keywords, modseq, fid, uid))

    def update_flags_many(self, rows: list[tuple[str, str, str, str, int, int, int]]) -> None:
        """update_flags() of each (subdir, name, sysflags, keywords, modseq, folder id, uid)."""
        self.conn.executemany("UPDATE messages SET subdir=?, name=?, sysflags=?, keywords=?, modseq=? "
                              "WHERE folder_id=? AND uid=?", rows)

    def delete(self, fid: int, uid: int) -> None:
        self.conn.execute("DELETE FROM messages WHERE folder_id=? AND uid=?", (fid, uid))

    def delete_many(self, fid: int, uids: Iterable[int]) -> None:
        self.conn.executemany("DELETE FROM messages WHERE folder_id=? AND uid=?", [(fid, u) for u in uids])

    # ------------------------------------------------------------------ \Recent
    def recent_floor(self, fid: int, uidvalidity: int) -> int:
        row = self.conn.execute("SELECT uidvalidity, floor FROM recent WHERE folder_id = ?", (fid,)).fetchone()
        return row[1] if row is not None and row[0] == uidvalidity else 0

    def set_recent_floor(self, fid: int, uidvalidity: int, floor: int) -> None:
        self.conn.execute("INSERT OR REPLACE INTO recent VALUES (?, ?, ?)", (fid, uidvalidity, floor))

    # ------------------------------------------------------------------ delivery records
    def delivery(self, digest: str) -> tuple[str, int, int] | None:
        """(folder, uid, uidvalidity) of the earlier delivery with this digest, or None."""
        return self.conn.execute("SELECT folder, uid, uidvalidity FROM deliveries WHERE digest = ?",
                                 (digest,)).fetchone()

    def record_delivery(self, digest: str, folder: str, uid: int, uidvalidity: int, at: float) -> None:
        self.conn.execute("INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?)",
                          (digest, folder, uid, uidvalidity, at))

    def forget_delivery(self, digest: str) -> None:
        self.conn.execute("DELETE FROM deliveries WHERE digest=?", (digest,))

    def prune_deliveries(self, before: float) -> None:
        self.conn.execute("DELETE FROM deliveries WHERE at < ?", (before,))
