"""Which UIDs of a folder were expunged after a given MODSEQ (IMAP QRESYNC, RFC 7162).

The index forgets an expunged message's row, so it keeps a tombstone instead: a trigger on the
messages table records (folder, uid, modseq of the expunge) for every row deleted, in the same
transaction (EXPUNGE, MOVE, syncs that find a file gone), and a trigger on the folders table
drops a deleted folder's tombstones. The expunge's modseq is the folder's HIGHESTMODSEQ before
the change plus one: the store deletes rows before it raises HIGHESTMODSEQ in that transaction,
so a client that has seen HIGHESTMODSEQ >= that value has seen the expunge.

Tombstones exist from the moment the triggers were added (the first time QRESYNC is used on the
mailbox); the `vanished_since` table remembers each folder's HIGHESTMODSEQ at that moment. For a
client whose MODSEQ is older (or older than the tombstones kept, see below), `expunged_since`
cannot be exact and answers every UID below UIDNEXT that is not in the folder (RFC 7162 3.2.5.1
lets VANISHED (EARLIER) name UIDs the client never knew; the caller narrows it to the client's
known UIDs when it has them).

Tombstones are bounded: every change that expunges calls `prune`, which keeps a folder's newest
KEEP tombstones and drops the older ones (those of one expunge go or stay together), raising
the folder's `vanished_since` floor to the newest MODSEQ it dropped. A client whose MODSEQ is
below that floor gets the inexact answer above, which still names every UID it may hold that
is gone; one at or above it gets the exact one.
"""

from __future__ import annotations

import sqlite3
from typing import Callable, ContextManager, Iterable

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS vanished (folder_id INTEGER NOT NULL, uid INTEGER NOT NULL, "
    "modseq INTEGER NOT NULL, PRIMARY KEY (folder_id, uid)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS vanished_modseq ON vanished (folder_id, modseq)",
    "CREATE TABLE IF NOT EXISTS vanished_since (folder_id INTEGER PRIMARY KEY, modseq INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS vanished_on_delete AFTER DELETE ON messages BEGIN "
    "INSERT OR REPLACE INTO vanished (folder_id, uid, modseq) VALUES (OLD.folder_id, OLD.uid, "
    "(SELECT highestmodseq + 1 FROM folders WHERE id = OLD.folder_id)); END",
    "CREATE TRIGGER IF NOT EXISTS vanished_on_folder_delete AFTER DELETE ON folders BEGIN "
    "DELETE FROM vanished WHERE folder_id = OLD.id; DELETE FROM vanished_since WHERE folder_id = OLD.id; END",
)
_READY = "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'vanished_on_%'"
_TRACKING = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vanished'"

KEEP = 10_000
"""Tombstones kept per folder (rows of three integers). Finding the cut is an index walk over
KEEP entries once per change that expunges (0.24 ms measured on an in-memory table)."""


def ensure(conn: sqlite3.Connection, txn: Callable[[], ContextManager[sqlite3.Connection]]) -> None:
    """Add the tombstones' table and triggers once per index (mailbox lock held)."""
    if conn.execute(_READY).fetchone()[0] == 2:
        return
    with txn():
        for statement in _SCHEMA:
            conn.execute(statement)
        # expunges before this moment left no tombstone: remember where exact answers begin
        conn.execute("INSERT OR REPLACE INTO vanished_since (folder_id, modseq) SELECT id, highestmodseq FROM folders")


def prune(conn: sqlite3.Connection, folder_id: int, tracked: bool = False) -> bool:
    """Keep the folder's newest KEEP tombstones (call inside the transaction that expunged;
    a no-op while tombstones are not tracked). Tombstones sharing the MODSEQ of the first one
    dropped go too, so the floor is exact: every expunge after it is still known.
    Returns whether tombstones are tracked; `tracked`: the caller knows they are (it found so
    earlier on this connection: perf, no sqlite_master lookup per expunge). While they are not,
    every call looks again: another connection may add the table at any time."""
    if not tracked and conn.execute(_TRACKING).fetchone() is None:
        return False
    row = conn.execute("SELECT modseq FROM vanished WHERE folder_id = ? ORDER BY modseq DESC LIMIT 1 OFFSET ?",
                       (folder_id, KEEP)).fetchone()
    if row is None:
        return True
    floor = row[0]
    conn.execute("DELETE FROM vanished WHERE folder_id = ? AND modseq <= ?", (folder_id, floor))
    conn.execute("INSERT INTO vanished_since (folder_id, modseq) VALUES (?, ?) ON CONFLICT (folder_id) "
                 "DO UPDATE SET modseq = max(modseq, excluded.modseq)", (folder_id, floor))
    return True


def expunged_since(conn: sqlite3.Connection, folder_id: int, modseq: int, uidnext: int) -> list[tuple[int, int]]:
    """UIDs of the folder expunged after `modseq`, as ascending (low, high) ranges (see the
    module docstring for the inexact case: then every gap below UIDNEXT)."""
    row = conn.execute("SELECT modseq FROM vanished_since WHERE folder_id = ?", (folder_id,)).fetchone()
    since = row[0] if row else 0   # a folder made after the triggers: every expunge is known
    if modseq < since:
        out: list[tuple[int, int]] = []
        nxt = 1
        for (uid,) in conn.execute("SELECT uid FROM messages WHERE folder_id = ? ORDER BY uid", (folder_id,)):
            if uid > nxt:
                out.append((nxt, uid - 1))
            nxt = uid + 1
        if nxt < uidnext:
            out.append((nxt, uidnext - 1))
        return out
    rows = conn.execute("SELECT uid FROM vanished WHERE folder_id = ? AND modseq > ? ORDER BY uid",
                        (folder_id, modseq)).fetchall()
    return ranges(r[0] for r in rows)


def ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    """Ascending UIDs -> (low, high) runs."""
    out: list[tuple[int, int]] = []
    for u in uids:
        if out and u == out[-1][1] + 1:
            out[-1] = (out[-1][0], u)
        else:
            out.append((u, u))
    return out
