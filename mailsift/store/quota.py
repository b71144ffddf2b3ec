"""Per-user storage quota (RFC 9208, resource STORAGE): what a user uses and may use.

Usage is the sum of the RFC822.SIZE of every message in every folder of the user, as the index
knows them. It is kept in the index itself: a one-row table `quota_usage` that SQLite triggers on
`messages` keep current inside the same transactions that add or remove rows (deliveries,
APPEND, COPY, MOVE, EXPUNGE, folder deletion, and files found or lost by a sync), so asking
costs one row read, never a walk of the Maildir or a scan of the messages. The table and its
triggers are made, and the usage counted once, the first time a quota is asked about; an index
rebuilt from the files lacks them and gets them the same way.

Limits: `[store] quota_mb` for everyone, a per-user override in the user database
(`mailsift user set NAME --quota-mb N`, 0 = no limit, `default` = back to the default). The
store refuses an APPEND, COPY or delivery that would take the usage past the limit
(api.OverQuota); MOVE and EXPUNGE never grow it, so a user over quota can always clean up.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from typing import Callable, ContextManager

log = logging.getLogger("mailsift.store.quota")

ROOT = "User quota"   # the one quota root of every user (the name Dovecot gives it)
MIB = 1024 * 1024
LIMIT_CACHE_SECONDS = 10.0  # a change made with `mailsift user set` reaches a running server this fast

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS quota_usage (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "bytes INTEGER NOT NULL, messages INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_insert AFTER INSERT ON messages BEGIN "
    "UPDATE quota_usage SET bytes = bytes + NEW.size, messages = messages + 1; END",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_delete AFTER DELETE ON messages BEGIN "
    "UPDATE quota_usage SET bytes = bytes - OLD.size, messages = messages - 1; END",
    "CREATE TRIGGER IF NOT EXISTS quota_usage_size AFTER UPDATE OF size ON messages BEGIN "
    "UPDATE quota_usage SET bytes = bytes + NEW.size - OLD.size; END",
)
_READY = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'quota_usage_%'"


def usage(conn: sqlite3.Connection, txn: Callable[[], ContextManager[sqlite3.Connection]]) -> tuple[int, int]:
    """(bytes, messages) the user's index holds. Call with the mailbox lock held; `txn` opens a
    write transaction on `conn` (made use of once per index, to add the counter)."""
    if conn.execute(_READY).fetchone()[0] != len(_SCHEMA) - 1:
        with txn():
            for statement in _SCHEMA:
                conn.execute(statement)
            # counted in the transaction that adds the triggers: no change can fall between
            conn.execute("INSERT OR REPLACE INTO quota_usage (id, bytes, messages) "
                         "SELECT 1, coalesce(sum(size), 0), count(*) FROM messages")
    row = conn.execute("SELECT bytes, messages FROM quota_usage WHERE id = 1").fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def recount(conn: sqlite3.Connection) -> tuple[int, int]:
    """What the counter should say, counted the slow way (for tests and checks)."""
    row = conn.execute("SELECT coalesce(sum(size), 0), count(*) FROM messages").fetchone()
    return int(row[0]), int(row[1])


def deleted_size(conn: sqlite3.Connection, folder_id: int) -> int:
    """Bytes of the folder's \\Deleted messages: what EXPUNGE would give back (STATUS DELETED-STORAGE)."""
    row = conn.execute("SELECT coalesce(sum(size), 0) FROM messages WHERE folder_id = ? "
                       "AND instr(sysflags, 'T') > 0", (folder_id,)).fetchone()
    return int(row[0])


def kib(n: int) -> int:
    """RFC 9208 counts STORAGE in units of 1024 octets (rounded up: a 1-byte message uses 1)."""
    return -(-n // 1024)


class Limits:
    """limit(user) -> bytes the user may use, or None (no limit). The default comes from
    `[store] quota_mb`; `override(user)` (the user database) answers MiB, 0 for no limit, or
    None for the default. Answers are cached for LIMIT_CACHE_SECONDS."""

    def __init__(self, default_mb: int, override: Callable[[str], int | None] | None = None,
                 ttl: float = LIMIT_CACHE_SECONDS) -> None:
        self.default_mb = default_mb
        self.override = override
        self.ttl = ttl
        self._cache: dict[str, tuple[float, int | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, user: str) -> int | None:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(user)
            if hit is not None and hit[0] > now:
                return hit[1]
        mb: int | None = None
        if self.override is not None:
            try:
                mb = self.override(user)
            except Exception:  # noqa: BLE001 - an unreadable user database: the default applies
                log.warning("quota of %s: user database unreadable, using the default", user, exc_info=True)
        if mb is None:
            mb = self.default_mb
        limit = mb * MIB if mb > 0 else None
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[user] = (now + self.ttl, limit)
        return limit
