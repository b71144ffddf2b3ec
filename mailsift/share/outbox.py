"""The local durable queue of learn events waiting for Redis: DBPATH/share/outbox.sqlite.

    outbox = Outbox(dbpath)
    outbox.add(digest, "spam", raw, "feedback")   # inside the learner's run (written in batches)
    outbox.commit()                               # durable (fsynced) before the model is saved,
                                                  # or rollback() when the run does not save
    for event in outbox.pending(100): ...         # the agent sends them ...
    outbox.remove([event.id for ...])             # ... and removes what Redis took

Each event has a random id: the agent's append to the stream is skipped when Redis has already
taken that id (a send interrupted after Redis took it is sent again, never twice into the
stream). Messages are kept up to `max_bytes` (what the tokenizer reads). The file is private
(0600 in a 0700 directory): it holds people's mail.
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mailsift.share.snapshot import SHARE_DIR

OUTBOX_FILE = "outbox.sqlite"
FLUSH_EVERY = 64


@dataclass(frozen=True)
class Event:
    id: str
    digest: str
    label: str
    source: str
    raw: bytes
    t: float


class Outbox:
    def __init__(self, dbpath: str | Path, max_bytes: int = 262144) -> None:
        self.dir = Path(dbpath) / SHARE_DIR
        self.path = self.dir / OUTBOX_FILE
        self.max_bytes = max_bytes
        self._db: sqlite3.Connection | None = None
        self._buffer: list[tuple[str, str, str, str, bytes, float, str, int]] = []
        self._run = uuid.uuid4().hex

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Never os.open()/close() the database file here: closing any descriptor of it drops the
            # POSIX locks another connection of this process holds (the agent's and the learner's).
            db = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "id TEXT NOT NULL UNIQUE, digest TEXT NOT NULL, label TEXT NOT NULL, "
                       "source TEXT NOT NULL, raw BLOB NOT NULL, t REAL NOT NULL, "
                       "run TEXT NOT NULL, committed INTEGER NOT NULL)")
            # What a run killed before its commit() left: never sent, removed after a day.
            db.execute("DELETE FROM outbox WHERE committed = 0 AND t < ?", (time.time() - 86400,))
            self._db = db
        return self._db

    def add(self, digest: str, label: str, raw: bytes, source: str) -> None:
        """Queue one event; it is sent once commit() made this run's events durable."""
        self._buffer.append((uuid.uuid4().hex, digest, label, source, raw[: self.max_bytes], time.time(),
                             self._run, 0))
        if len(self._buffer) >= FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        """Write buffered events in one short transaction (the agent is never kept waiting long)."""
        if not self._buffer:
            return
        db = self._conn()
        with db:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO outbox (id, digest, label, source, raw, t, run, committed) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._buffer)
        self._buffer.clear()

    def commit(self) -> None:
        """This run's events, durable and ready to send (the learner calls it before it saves)."""
        self._flush()
        if self._db is not None:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("UPDATE outbox SET committed = 1 WHERE run = ?", (self._run,))
        self._run = uuid.uuid4().hex

    def rollback(self) -> None:
        """Forget this run's events (the learner did not save)."""
        self._buffer.clear()
        if self._db is not None:
            self._db.execute("DELETE FROM outbox WHERE run = ? AND committed = 0", (self._run,))
        self._run = uuid.uuid4().hex

    def pending(self, limit: int = 100) -> list[Event]:
        """The oldest `limit` events (none when the outbox was never written)."""
        if self._db is None and not self.path.exists():
            return []
        rows = self._conn().execute("SELECT id, digest, label, source, raw, t FROM outbox WHERE committed = 1 ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()
        return [Event(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]

    def count(self) -> int:
        if self._db is None and not self.path.exists():
            return 0
        return int(self._conn().execute("SELECT COUNT(*) FROM outbox WHERE committed = 1").fetchone()[0])

    def remove(self, ids: list[str]) -> None:
        if ids:
            self._conn().executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
