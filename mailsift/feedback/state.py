"""The feedback learner's durable state, DBPATH/feedback/state.sqlite (beside the spool):

    pending   messages filed by delivery or APPEND, waiting to be confirmed by what the user
              does with them (implicit.py): where the message is now, the label its folder
              implies, since when, whether it was read, and for mail filed into Junk its bytes
              (so that spam deleted from Junk unread can still be learned).
    deferred  judgements over a user's daily learning cap, with the message bytes, learned on a
              later day (oldest first).
    daily     per user and UTC day: judgements learned, deferred, and dropped from the deferred
              queue because it was full.

Only `mailsift serve`'s main process writes it (the IMAP worker processes' events reach the
learner there); `mailsift feedback status` reads it. One connection, serialised by a lock: the
learner's tracker thread, its worker and its sweeper all use it. Each change is committed on its
own, except inside `batch()`: the tracker records a batch of store events in one transaction
(perf: a commit costs more than the statements of a few events together). WAL with
synchronous=NORMAL: a crash of the process loses nothing committed, a power loss at most the
last commits.
Rows are small except the bytes of pending Junk mail and of deferred judgements, which are
bounded per message (implicit.MAX_KEPT_BYTES, spool.MAX_MESSAGE_BYTES) and in number (implicit.MAX_PENDING_PER_USER,
learner: 7 days of a user's cap).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mailsift.feedback.spool import FEEDBACK_DIR

STATE_FILE = "state.sqlite"
DAY = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    id INTEGER PRIMARY KEY, user TEXT NOT NULL, folder TEXT NOT NULL, uid INTEGER NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('ham', 'spam')), since REAL NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0, reason TEXT, raw BLOB, emitted INTEGER NOT NULL DEFAULT 0,
    msgid TEXT, UNIQUE (user, folder, uid));
CREATE INDEX IF NOT EXISTS pending_since ON pending (since);
CREATE TABLE IF NOT EXISTS deferred (
    id INTEGER PRIMARY KEY, user TEXT NOT NULL, digest TEXT NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('ham', 'spam')), reason TEXT NOT NULL, folder TEXT NOT NULL,
    uid INTEGER NOT NULL, implicit INTEGER NOT NULL, t REAL NOT NULL, raw BLOB,
    emitted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS deferred_user ON deferred (user, id);
CREATE INDEX IF NOT EXISTS deferred_digest ON deferred (digest);
CREATE TABLE IF NOT EXISTS daily (
    user TEXT NOT NULL, day INTEGER NOT NULL, learned INTEGER NOT NULL DEFAULT 0,
    deferred INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (user, day));
"""


def day_of(t: float) -> int:
    """The UTC day number of time `t` (the cap's unit)."""
    return int(t // DAY)


@dataclass(frozen=True)
class Pending:
    id: int
    user: str
    folder: str
    uid: int
    label: str
    since: float
    seen: bool
    reason: str | None


@dataclass(frozen=True)
class Deferred:
    id: int
    user: str
    digest: str
    label: str
    reason: str
    folder: str
    uid: int
    implicit: bool
    t: float


_PENDING_COLS = "id, user, folder, uid, label, since, seen, reason"
_DEFERRED_COLS = "id, user, digest, label, reason, folder, uid, implicit, t"


def _pending(row: tuple) -> Pending:
    return Pending(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), row[7])


def _deferred(row: tuple) -> Deferred:
    return Deferred(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8])


class State:
    def __init__(self, dbpath: str | Path, readonly: bool = False) -> None:
        """The file is created by the first change that needs it, not before (a server that
        learns nothing leaves nothing behind); readonly opens an existing one at once."""
        self.path = Path(dbpath) / FEEDBACK_DIR / STATE_FILE
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._in_batch = False  # inside batch(), by the thread holding the lock
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(str(self.path))
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30,
                                       isolation_level=None, check_same_thread=False)

    @property
    def db(self) -> sqlite3.Connection:
        with self._lock:
            if self._db is None:
                self._db = self._open()
            if self._in_batch and not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")  # the batch's first statement (or the first after an error)
            return self._db

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The changes made inside, by this thread, in one transaction, committed at the end (the
        other threads wait for it). Nothing is opened or created unless something is done; an
        exception that leaves the block rolls the batch back."""
        with self._lock:
            if self._in_batch:  # nested: part of the outer one
                yield
                return
            self._in_batch = True
            try:
                yield
            except BaseException:
                if self._db is not None and self._db.in_transaction:
                    self._db.rollback()
                raise
            else:
                if self._db is not None and self._db.in_transaction:
                    try:
                        self._db.commit()
                    except sqlite3.Error:
                        if self._db.in_transaction:
                            self._db.rollback()
                        raise
            finally:
                self._in_batch = False

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))  # people's mail: private
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table: kept bytes come and go
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        return db

    def ready(self) -> bool:
        """Is there state (open, or a file to open)? Readers ask first, so as not to create it."""
        with self._lock:
            return self._db is not None or self.path.exists()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _exec(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self.db.execute(sql, args)

    # -- pending confirmations ------------------------------------------------------------------
    def add_pending(self, user: str, folder: str, uid: int, label: str, since: float, seen: bool,
                    raw: bytes | None = None) -> None:
        self._exec("INSERT OR REPLACE INTO pending (user, folder, uid, label, since, seen, raw) "
                   "VALUES (?,?,?,?,?,?,?)", (user, folder, uid, label, since, int(seen), raw))

    def get_pending(self, user: str, folder: str, uid: int) -> Pending | None:
        row = self._exec(f"SELECT {_PENDING_COLS} FROM pending WHERE user=? AND folder=? AND uid=?",
                         (user, folder, uid)).fetchone()
        return _pending(row) if row else None

    def pending_raw(self, pid: int) -> bytes | None:
        row = self._exec("SELECT raw FROM pending WHERE id=?", (pid,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def delete_pending(self, ids: list[int]) -> None:
        if ids:
            with self._lock:
                self.db.executemany("DELETE FROM pending WHERE id=?", [(i,) for i in ids])

    def relocate(self, pid: int, folder: str, uid: int) -> None:
        with self._lock:
            self.db.execute("DELETE FROM pending WHERE user=(SELECT user FROM pending WHERE id=?) "
                            "AND folder=? AND uid=? AND id<>?", (pid, folder, uid, pid))
            self.db.execute("UPDATE pending SET folder=?, uid=? WHERE id=?", (folder, uid, pid))

    def set_seen(self, pid: int, seen: bool) -> None:
        self._exec("UPDATE pending SET seen=? WHERE id=?", (int(seen), pid))

    def confirm(self, pid: int, reason: str, label: str | None = None) -> None:
        """Confirmed now (a reply, a move into a user folder): learn at the next sweep."""
        if label is None:
            self._exec("UPDATE pending SET reason=? WHERE id=?", (reason, pid))
        else:
            self._exec("UPDATE pending SET reason=?, label=? WHERE id=?", (reason, label, pid))

    def unconfirmed_ham(self, user: str, limit: int) -> list[tuple[int, str, int, str | None]]:
        """(id, folder, uid, Message-ID or None when not read yet) of the user's newest pending
        ham not confirmed yet."""
        return self._exec("SELECT id, folder, uid, msgid FROM pending WHERE user=? AND label='ham' AND "
                          "reason IS NULL AND emitted=0 ORDER BY since DESC LIMIT ?", (user, limit)).fetchall()

    def set_msgid(self, pid: int, msgid: str) -> None:
        self._exec("UPDATE pending SET msgid=? WHERE id=?", (msgid, pid))

    def rename_folder(self, user: str, old: str, new: str) -> None:
        with self._lock:
            self.db.execute("UPDATE pending SET folder=? WHERE user=? AND folder=?", (new, user, old))
            self.db.execute("UPDATE pending SET folder=? || substr(folder, ?) WHERE user=? AND "
                            "substr(folder, 1, ?) = ?", (new, len(old) + 1, user, len(old) + 1, old + "."))

    def delete_folder(self, user: str, folder: str) -> None:
        self._exec("DELETE FROM pending WHERE user=? AND folder=?", (user, folder))

    def due(self, now: float, confirm_after: float, limit: int = 1000) -> list[Pending]:
        """Not yet handed to the learner, and confirmed at once, or filed `confirm_after` ago and
        (ham) read since."""
        rows = self._exec(
            f"SELECT {_PENDING_COLS} FROM pending WHERE emitted=0 AND (reason IS NOT NULL OR "
            "(since <= ? AND (label='spam' OR seen=1))) ORDER BY since LIMIT ?",
            (now - confirm_after, limit)).fetchall()
        return [_pending(r) for r in rows]

    def mark_emitted(self, table: str, ids: list[int], emitted: bool = True) -> None:
        assert table in ("pending", "deferred")
        if ids:
            with self._lock:
                self.db.executemany(f"UPDATE {table} SET emitted=? WHERE id=?", [(int(emitted), i) for i in ids])

    def reset_emitted(self) -> None:
        """At start: whatever was handed to the previous run's learner and not done is due again."""
        with self._lock:
            self.db.execute("UPDATE pending SET emitted=0 WHERE emitted=1")
            self.db.execute("UPDATE deferred SET emitted=0 WHERE emitted=1")

    def expire(self, before: float) -> int:
        """Forget unread ham filed before `before` (nobody looked: no confirmation)."""
        return self._exec("DELETE FROM pending WHERE since < ? AND label='ham' AND seen=0 AND reason IS NULL "
                          "AND emitted=0", (before,)).rowcount

    def trim_users(self, max_per_user: int) -> int:
        """Keep at most `max_per_user` pending rows per user (the newest)."""
        with self._lock:
            over = self.db.execute("SELECT user, COUNT(*) FROM pending GROUP BY user HAVING COUNT(*) > ?",
                                   (max_per_user,)).fetchall()
            n = 0
            for user, count in over:
                n += self.db.execute(
                    "DELETE FROM pending WHERE id IN (SELECT id FROM pending WHERE user=? AND emitted=0 "
                    "ORDER BY since LIMIT ?)", (user, count - max_per_user)).rowcount
            return n

    def vacuum(self, pages: int = 2000) -> None:
        """Return free pages (bytes of learned or dropped mail) to the file system, a few at a time."""
        with self._lock:
            self.db.executescript(f"PRAGMA incremental_vacuum({int(pages)});")  # steps it to the end

    # -- deferred judgements and the daily counts -----------------------------------------------
    def add_deferred(self, user: str, digest: str, label: str, reason: str, folder: str, uid: int,
                     implicit: bool, t: float, raw: bytes | None) -> int:
        cur = self._exec("INSERT INTO deferred (user, digest, label, reason, folder, uid, implicit, t, raw) "
                         "VALUES (?,?,?,?,?,?,?,?,?)", (user, digest, label, reason, folder, uid, int(implicit),
                                                        t, raw))
        return int(cur.lastrowid or 0)

    def deferred_count(self, user: str) -> int:
        return int(self._exec("SELECT COUNT(*) FROM deferred WHERE user=?", (user,)).fetchone()[0])

    def deferred_raw(self, did: int) -> bytes | None:
        row = self._exec("SELECT raw FROM deferred WHERE id=?", (did,)).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def delete_deferred(self, ids: list[int]) -> None:
        if ids:
            with self._lock:
                self.db.executemany("DELETE FROM deferred WHERE id=?", [(i,) for i in ids])

    def supersede_deferred(self, digest: str, explicit: bool, keep: int | None = None) -> list[int]:
        """A newer judgement about `digest`: drop older deferred ones it outranks (an explicit
        judgement outranks every one, an implicit one only implicit ones). Returns their ids."""
        sql = "SELECT id FROM deferred WHERE digest=? AND emitted=0" + ("" if explicit else " AND implicit=1")
        ids = [r[0] for r in self._exec(sql, (digest,)).fetchall() if r[0] != keep]
        self.delete_deferred(ids)
        return ids

    def deferred_users(self) -> list[str]:
        return [r[0] for r in self._exec("SELECT DISTINCT user FROM deferred WHERE emitted=0").fetchall()]

    def oldest_deferred(self, user: str, limit: int) -> list[Deferred]:
        rows = self._exec(f"SELECT {_DEFERRED_COLS} FROM deferred WHERE user=? AND emitted=0 ORDER BY id LIMIT ?",
                          (user, limit)).fetchall()
        return [_deferred(r) for r in rows]

    def count(self, user: str, day: int, column: str = "learned") -> int:
        assert column in ("learned", "deferred", "dropped")
        row = self._exec(f"SELECT {column} FROM daily WHERE user=? AND day=?", (user, day)).fetchone()
        return int(row[0]) if row else 0

    def add_count(self, user: str, day: int, column: str, n: int = 1) -> None:
        assert column in ("learned", "deferred", "dropped")
        if n:
            with self._lock:
                self.db.execute("INSERT OR IGNORE INTO daily (user, day) VALUES (?, ?)", (user, day))
                self.db.execute(f"UPDATE daily SET {column} = {column} + ? WHERE user=? AND day=?", (n, user, day))
                self.db.execute("DELETE FROM daily WHERE day < ?", (day - 90,))

    # -- reporting ------------------------------------------------------------------------------
    def summary(self, day: int) -> dict[str, object]:
        with self._lock:
            pending = dict(self.db.execute("SELECT label, COUNT(*) FROM pending GROUP BY label").fetchall())
            deferred = dict(self.db.execute("SELECT user, COUNT(*) FROM deferred GROUP BY user").fetchall())
            today = {r[0]: (r[1], r[2], r[3]) for r in self.db.execute(
                "SELECT user, learned, deferred, dropped FROM daily WHERE day=? ORDER BY user", (day,))}
            dropped = dict(self.db.execute("SELECT user, SUM(dropped) FROM daily GROUP BY user "
                                           "HAVING SUM(dropped) > 0").fetchall())
        return {"pending": pending, "deferred": deferred, "today": today, "dropped": dropped}
