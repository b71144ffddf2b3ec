"""The save date the store keeps per message (RFC 8514: when it was saved in its current folder):
set by delivery, APPEND, COPY and MOVE, kept by flag changes, and given to the rows of an
index from before it was kept (schema 1) when that index is upgraded in place."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from mailsift.store import index as idx
from mailsift.store.api import INBOX, Store

USER = "alice@example.test"
MSG = b"From: a@example.test\r\nSubject: s\r\n\r\nbody\r\n"
OLD = 1_500_000_000.0  # an INTERNALDATE in 2017


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "mail", hostname="test.host")
    yield s
    s.close()


def test_delivery_and_append_are_saved_now(store: Store) -> None:
    box = store.mailbox(USER)
    t0 = time.time()
    d = box.deliver(MSG, internal_date=OLD)
    a = box.append(INBOX, MSG, internal_date=OLD)
    [m1, m2] = box.list(INBOX)
    assert (m1.uid, m2.uid) == (d.uid, a.uid)
    for m in (m1, m2):
        assert m.internal_date == OLD
        assert m.save_date is not None and t0 - 1 <= m.save_date <= time.time() + 1
    assert a.save_date == m2.save_date  # append returns what list() says


def test_copy_and_move_are_new_saves_and_keep_internaldate(store: Store) -> None:
    box = store.mailbox(USER)
    box.create_folder("Archive")
    box.append(INBOX, MSG, internal_date=OLD)
    box.append(INBOX, MSG, internal_date=OLD)
    with box._lock, box._txn():  # pretend they were saved in INBOX long ago
        box._db.conn.execute("UPDATE messages SET save_date = ?", (OLD + 60,))
    box.sync(INBOX, force=True)
    store.listings.drop((USER, box._frow(INBOX)["id"]))
    [src1, src2] = box.list(INBOX)
    assert src1.save_date == OLD + 60
    t0 = time.time()
    [(_, cuid)] = box.copy(INBOX, [src1.uid], "Archive")
    [(_, muid)] = box.move(INBOX, [src2.uid], "Archive")
    for uid in (cuid, muid):
        m = box.get("Archive", uid)
        assert m.internal_date == OLD
        assert m.save_date is not None and m.save_date >= t0 - 1
    assert box.get(INBOX, src1.uid).save_date == OLD + 60  # the copy's source is unchanged


def test_flag_changes_keep_the_save_date(store: Store) -> None:
    box = store.mailbox(USER)
    info = box.append(INBOX, MSG, internal_date=OLD)
    [changed] = box.store_flags(INBOX, [info.uid], ["\\Seen", "kw"])
    assert changed.save_date == info.save_date
    assert box.get(INBOX, info.uid).save_date == info.save_date


def make_schema1(mailbox_path: Path) -> None:
    """Turn a mailbox's index into what the code before save dates wrote (schema 1)."""
    conn = sqlite3.connect(mailbox_path / idx.INDEX_NAME)
    with conn:
        conn.execute("ALTER TABLE messages DROP COLUMN save_date")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.close()


def test_an_index_from_before_save_dates_is_upgraded_in_place(tmp_path: Path) -> None:
    s = Store(tmp_path / "mail", hostname="test.host")
    box = s.mailbox(USER)
    box.append(INBOX, MSG, flags=["\\Seen"], internal_date=OLD)
    uidvalidity = box.status(INBOX).uidvalidity
    path = box.path
    s.close()
    make_schema1(path)
    s = Store(tmp_path / "mail", hostname="test.host")
    try:
        box = s.mailbox(USER)
        st = box.status(INBOX)
        assert st.uidvalidity == uidvalidity  # upgraded, not rebuilt
        [m] = box.list(INBOX)
        assert m.save_date == OLD and m.flags == {"\\Seen"}
        conn = sqlite3.connect(path / idx.INDEX_NAME)
        assert conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone() == (str(idx.SCHEMA_VERSION),)
        conn.close()
        t0 = time.time()
        new = box.append(INBOX, MSG, internal_date=OLD)
        assert new.save_date is not None and new.save_date >= t0 - 1
    finally:
        s.close()


def test_a_busy_upgrade_fails_cleanly_and_sets_nothing_aside(tmp_path: Path) -> None:
    """Another writer holding the index while it is to be upgraded: the open fails (the caller
    answers 4xx) and the index is kept, not rebuilt with a new UIDVALIDITY; later it upgrades."""
    s = Store(tmp_path / "mail", hostname="test.host")
    box = s.mailbox(USER)
    box.append(INBOX, MSG, internal_date=OLD)
    uidvalidity = box.status(INBOX).uidvalidity
    path = box.path
    s.close()
    make_schema1(path)
    other = sqlite3.connect(path / idx.INDEX_NAME, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    s = Store(tmp_path / "mail", hostname="test.host", lock_timeout=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError):
            s.mailbox(USER)
        assert not list(path.glob("*.broken-*"))
        other.execute("ROLLBACK")
        other.close()
        box = s.mailbox(USER)
        assert box.status(INBOX).uidvalidity == uidvalidity
        assert [m.save_date for m in box.list(INBOX)] == [OLD]
    finally:
        s.close()
