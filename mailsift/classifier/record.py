"""The learn record: message digest -> label (and its LR step), in SQLite beside the model.

It gives `mailsift learn` sa-learn's semantics: the same message learned twice is a no-op,
learned with the other label it moves, `--forget` removes exactly what was learned.

The digest identifies a message across deliveries: SHA-256 of its Message-ID and its body
(line endings normalised), so the copy in Junk and the copy in an mbox are the same message,
while the Received/Delivered-To lines each delivery adds do not matter.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from pathlib import Path

RECORD_FILE = "learned.sqlite"

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID_RE = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")


def message_digest(raw: bytes) -> str:
    m = _BLANK_LINE_RE.search(raw)
    head, body = (raw[: m.start() + 1], raw[m.end():]) if m else (raw, b"")
    mid = _MESSAGE_ID_RE.search(head)
    h = hashlib.sha256()
    h.update(b" ".join(mid.group(1).split()) if mid else b"")
    h.update(b"\0")
    h.update(body.replace(b"\r\n", b"\n").rstrip())
    return h.hexdigest()


class LearnRecord:
    """digest -> (label, step) in DIR/learned.sqlite. Use as a context manager."""

    def __init__(self, dbpath: str | Path) -> None:
        self.path = Path(dbpath) / RECORD_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS learned (digest TEXT PRIMARY KEY, "
            "label TEXT NOT NULL CHECK (label IN ('ham', 'spam')), step REAL, learned_at REAL NOT NULL)"
        )
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def __enter__(self) -> LearnRecord:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def get(self, digest: str) -> tuple[str, float | None] | None:
        row = self.db.execute("SELECT label, step FROM learned WHERE digest = ?", (digest,)).fetchone()
        return (row[0], row[1]) if row else None

    def put(self, digest: str, label: str, step: float | None) -> None:
        self.db.execute("INSERT OR REPLACE INTO learned VALUES (?, ?, ?, ?)", (digest, label, step, time.time()))

    def delete(self, digest: str) -> None:
        self.db.execute("DELETE FROM learned WHERE digest = ?", (digest,))

    def counts(self) -> dict[str, int]:
        rows = self.db.execute("SELECT label, COUNT(*) FROM learned GROUP BY label").fetchall()
        out = {"ham": 0, "spam": 0}
        out.update({label: n for label, n in rows})
        return out

    def rows(self) -> list[tuple[str, str, float]]:
        return [(d, label, float("nan") if step is None else step)
                for d, label, step in self.db.execute("SELECT digest, label, step FROM learned ORDER BY learned_at")]

    def replace_all(self, rows: list[tuple[str, str, float]]) -> None:
        self.db.execute("DELETE FROM learned")
        now = time.time()
        self.db.executemany("INSERT OR REPLACE INTO learned VALUES (?, ?, ?, ?)",
                            [(d, label, None if step != step else step, now) for d, label, step in rows])

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
