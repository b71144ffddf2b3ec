from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailsift.store import index


def test_a_busy_index_is_not_set_aside(tmp_path: Path) -> None:
    """A sound index that another process holds locked past the timeout fails this open (the
    caller answers 4xx and retries); it is never set aside and rebuilt, which would give every
    folder a new UIDVALIDITY and make each client fetch its mail again."""
    conn, fresh = index.connect(tmp_path, timeout=1.0)
    assert fresh
    conn.close()
    db = tmp_path / index.INDEX_NAME
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked|busy"):
            index.connect(tmp_path, timeout=0.2)
    finally:
        holder.rollback()
        holder.close()
    assert not list(tmp_path.glob("*.broken-*"))
    conn, fresh = index.connect(tmp_path, timeout=1.0)
    assert not fresh
    conn.close()
