"""The per-user SQLite index: folders (UIDVALIDITY, UIDNEXT, special use, subscription) and
messages (UID, file name, flags, keywords, internal date, size, modseq, save date).

It lives beside the Maildir as `mailsift-index.sqlite3` (WAL, synchronous=FULL: a commit is
on disk before the store answers). It is a cache of what the files say plus what only IMAP
knows (UIDs, keywords, subscriptions): when it is missing or unreadable it is rebuilt from the
files, and every folder gets a new UIDVALIDITY so clients resynchronise.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

log = logging.getLogger("mailsift.store.index")

INDEX_NAME = "mailsift-index.sqlite3"
SCHEMA_VERSION = 2  # 2: messages.save_date (RFC 8514 SAVEDATE)
WAL_AUTOCHECKPOINT = 1000  # WAL pages after which a commit checkpoints (SQLite's default)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS folders (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    mtime_new INTEGER NOT NULL DEFAULT -2,
    mtime_cur INTEGER NOT NULL DEFAULT -2
);
CREATE TABLE IF NOT EXISTS messages (
    folder_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    key TEXT NOT NULL,
    subdir TEXT NOT NULL,
    name TEXT NOT NULL,
    sysflags TEXT NOT NULL DEFAULT '',
    keywords TEXT NOT NULL DEFAULT '',
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    modseq INTEGER NOT NULL DEFAULT 1,
    save_date REAL,  -- when it was saved in this folder (delivery, APPEND, COPY, MOVE); NULL: unknown
    PRIMARY KEY (folder_id, uid)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_key ON messages (folder_id, key);
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY);
-- IMAP \\Recent: the highest UID a session has taken as recent, per folder (Mailbox.claim_recent)
CREATE TABLE IF NOT EXISTS recent (folder_id INTEGER PRIMARY KEY, uidvalidity INTEGER NOT NULL,
                                   floor INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    digest TEXT PRIMARY KEY, folder TEXT NOT NULL, uid INTEGER NOT NULL,
    uidvalidity INTEGER NOT NULL, at REAL NOT NULL
);
"""


def _last_uidvalidity(path: Path) -> int:
    """The highest UIDVALIDITY handed out for this mailbox, kept outside the index (so a lost
    index still yields a strictly newer one)."""
    try:
        return int((path / "mailsift-uidvalidity").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def next_uidvalidity(path: Path) -> int:
    """A fresh UIDVALIDITY for this mailbox: time-based, strictly above every earlier one."""
    value = max(int(time.time()), _last_uidvalidity(path) + 1) & 0xFFFFFFFF or 1
    tmp = path / "mailsift-uidvalidity.tmp"
    try:  # a fresh file, never what a link left there points to
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"{value}\n")
    os.replace(tmp, path / "mailsift-uidvalidity")
    return value


def connect(path: Path, timeout: float = 30.0, rebuild: bool = False) -> tuple[sqlite3.Connection, bool]:
    """Open (or create) the index in mailbox directory `path`. Returns (connection, rebuilt):
    rebuilt is True when the index was missing or broken and the caller must repopulate it.
    rebuild=True sets the index aside even when it passes the check (the caller met a
    corruption error on it). Call with the mailbox lock held."""
    db = path / INDEX_NAME
    fresh = not db.exists()
    try:
        if rebuild and not fresh:
            raise sqlite3.DatabaseError("corruption found while in use")
        conn = _open(db, timeout)
        if not fresh:
            row = conn.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {row}")
            version = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version is None:
                fresh = True
    except sqlite3.DatabaseError as exc:
        if _busy(exc):  # a sound index another process holds: this open fails, the caller retries
            try:
                conn.close()  # type: ignore[possibly-undefined]
            except Exception:
                pass
            raise
        log.error("index %s is unreadable (%s); rebuilding it from the Maildir", db, exc)
        try:
            conn.close()  # type: ignore[possibly-undefined]
        except Exception:
            pass
        stamp = time.time_ns()
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(db) + suffix)
            if p.exists():
                os.replace(p, Path(str(db) + suffix + f".broken-{stamp}"))
        conn = _open(db, timeout)
        fresh = True
    if fresh:
        with conn:
            conn.executescript(_SCHEMA)
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    else:  # (outside the try: a busy or failed upgrade must not set a sound index aside)
        try:
            _upgrade(conn)
        except BaseException:
            conn.close()
            raise
    return conn, fresh


def _busy(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: the index is held, not broken (setting it aside would give
    every folder a new UIDVALIDITY)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring an index of an older schema up to SCHEMA_VERSION in place (one transaction; the
    caller holds the mailbox lock). Version 1 lacked messages.save_date: its rows get their
    INTERNALDATE as save date, the time the message reached the store unless APPEND gave
    another (Dovecot also falls back to a date it has when it recorded no save date)."""
    cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
    if "save_date" in cols:
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")
        cols = {r[1] for r in conn.execute("PRAGMA table_info(messages)")}
        if "save_date" not in cols:  # (another process may have upgraded it meanwhile)
            conn.execute("ALTER TABLE messages ADD COLUMN save_date REAL")
            conn.execute("UPDATE messages SET save_date = internal_date")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            log.info("index upgraded to schema %d (save dates from INTERNALDATE)", SCHEMA_VERSION)


def file_id(index_file: str) -> tuple[int, int] | None:
    """(device, inode) of an index file (its path as a string: this runs before every locked
    store operation), None when it is missing: a process that finds another id than the one it
    opened reopens it (another process rebuilt it)."""
    try:
        st = os.stat(index_file)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def is_corruption(exc: BaseException) -> bool:
    """True for SQLite errors that mean the index file is damaged (not busy, not full)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    name = getattr(exc, "sqlite_errorname", None) or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def _open(db: Path, timeout: float = 30.0) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.executescript(_SCHEMA)
    try:
        os.chmod(db, 0o600)
    except OSError:
        pass
    return conn
