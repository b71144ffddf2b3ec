"""Quota accounting in the store (mailsift/store/quota.py): the usage counter kept by triggers in
the index always equals a recount, whatever changed the messages (deliveries, APPEND, COPY,
MOVE, EXPUNGE, folder deletion, outside changes, a rebuilt index); the limit is enforced under
the lock (concurrent deliveries cannot overshoot), never against MOVE or EXPUNGE; limits come
from [store] quota_mb and the user database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import pytest

from mailsift.store import quota
from mailsift.store.api import INBOX, OverQuota, Store
from mailsift.store.users import Users, UserError

USER = "quinn@example.test"


def body(n: int, tag: str = "") -> bytes:
    head = f"Subject: {tag or n}\r\n\r\n".encode()
    return head + b"x" * max(0, n - len(head) - 2) + b"\r\n"


def counted(box) -> tuple[tuple[int, int], tuple[int, int]]:
    """(the counter, a recount) read directly from the index file."""
    used, n, _limit = box.quota()
    conn = sqlite3.connect(box.path / "mailsift-index.sqlite3")
    try:
        return (used, n), quota.recount(conn)
    finally:
        conn.close()


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "mail", hostname="test.host")
    yield s
    s.close()


def test_the_counter_follows_every_kind_of_change(store: Store) -> None:
    box = store.mailbox(USER)
    box.deliver(body(500, "before the counter existed"))
    assert counted(box) == ((500, 1), (500, 1))         # counted once, when first asked
    box.deliver(body(1000))
    box.append(INBOX, body(300), ["\\Seen"])
    box.create_folder("Work")
    box.create_folder("Work.Old")
    box.append_many("Work", [(body(200), [], None), (body(201), [], None)])
    box.copy(INBOX, [1, 2], "Work")
    box.move(INBOX, [3], "Work.Old")
    box.store_flags("Work", [1, 3], ["\\Deleted"], "add")
    box.expunge("Work")
    a, b = counted(box)
    assert a == b and a[1] == 5
    box.delete_folder("Work.Old")
    # an outside program drops a file in and deletes another
    (box.path / "tmp" / "1.outside.host").write_bytes(b"Subject: outside\n\n" + b"y" * 99 + b"\n")
    os.rename(box.path / "tmp" / "1.outside.host", box.path / "new" / "1.outside.host")
    first = box.list(INBOX)[0]
    os.unlink(next(box.path.glob(f"*/{first.key}*")))
    box.list(INBOX)                                      # the sync finds both
    a, b = counted(box)
    assert a == b and a[1] == 4


def test_a_rebuilt_index_is_counted_again(tmp_path: Path) -> None:
    s = Store(tmp_path / "m")
    box = s.mailbox(USER)
    for i in range(3):
        box.deliver(body(700 + i))
    assert box.quota()[:2] == (2103, 3)
    s.close()
    for p in box.path.glob("mailsift-index.sqlite3*"):
        p.unlink()
    s2 = Store(tmp_path / "m")
    box2 = s2.mailbox(USER)
    assert box2.quota()[:2] == (2103, 3)
    box2.deliver(body(100))
    assert box2.quota()[:2] == (2203, 4)
    s2.close()


def test_limit_refuses_append_copy_delivery_but_never_move_or_expunge(store: Store) -> None:
    store.quota_limit = lambda user: 3000 if user == USER else None
    box = store.mailbox(USER)
    box.create_folder("Keep")
    box.deliver(body(1000))
    box.append(INBOX, body(1000))
    with pytest.raises(OverQuota):
        box.append(INBOX, body(1001))                    # 3001 > 3000
    box.append(INBOX, body(1000))                        # exactly full
    with pytest.raises(OverQuota):
        box.deliver(body(1))
    with pytest.raises(OverQuota):
        box.copy(INBOX, [1], "Keep")
    with pytest.raises(OverQuota):
        box.append_many("Keep", [(body(1), [], None)])
    assert box.move(INBOX, [1], "Keep") == [(1, 1)]      # a full user can still file and clean up
    box.store_flags("Keep", [1], ["\\Deleted"])
    box.expunge("Keep")
    assert box.quota() == (2000, 2, 3000)
    box.deliver(body(1000))
    assert [m.uid for m in box.list(INBOX)] == [2, 3, 4]
    assert not list(box.path.glob("tmp/*")) and not list(box.path.glob(".Keep/tmp/*"))
    other = store.mailbox("other@example.test")          # someone without a limit
    other.deliver(body(10_000))


def test_concurrent_deliveries_cannot_overshoot(store: Store) -> None:
    store.quota_limit = lambda user: 10 * 1000
    box = store.mailbox(USER)
    results: list[str] = []

    def work() -> None:
        try:
            store.mailbox(USER).deliver(body(1000))
            results.append("ok")
        except OverQuota:
            results.append("full")

    threads = [threading.Thread(target=work) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 10 and results.count("full") == 6
    assert box.quota()[:2] == (10_000, 10)


def test_limits_default_override_and_cache() -> None:
    answers: dict[str, int | None] = {"a@x.test": None, "b@x.test": 0, "c@x.test": 2}
    calls: list[str] = []

    def override(user: str) -> int | None:
        calls.append(user)
        return answers[user]

    limits = quota.Limits(5, override, ttl=0.2)
    assert limits("a@x.test") == 5 * quota.MIB               # the default
    assert limits("b@x.test") is None                        # 0: no limit
    assert limits("c@x.test") == 2 * quota.MIB
    answers["c@x.test"] = None
    assert limits("c@x.test") == 2 * quota.MIB and calls.count("c@x.test") == 1  # cached
    time.sleep(0.25)
    assert limits("c@x.test") == 5 * quota.MIB
    assert quota.Limits(0)("a@x.test") is None
    assert quota.Limits(1, lambda u: 1 // 0)("a@x.test") == quota.MIB  # a broken database: the default
    assert (quota.kib(0), quota.kib(1), quota.kib(1024), quota.kib(1025)) == (0, 1, 1, 2)


def test_user_database_keeps_a_quota_per_user(tmp_path: Path) -> None:
    users = Users(tmp_path / "users.db")
    users.add("q@example.test", "pw-q-123")
    assert users.quota_mb("q@example.test") is None
    users.set_quota_mb("q@example.test", 50)
    assert users.quota_mb("Q@example.test") == 50
    users.set_quota_mb("q@example.test", 0)
    assert users.quota_mb("q@example.test") == 0
    users.set_quota_mb("q@example.test", None)
    assert users.quota_mb("q@example.test") is None
    with pytest.raises(UserError):
        users.set_quota_mb("nobody@example.test", 5)
    with pytest.raises(UserError):
        users.set_quota_mb("q@example.test", -1)


def test_mailsift_user_set_quota(tmp_path: Path, mailsift_bin: str) -> None:
    db = tmp_path / "users.db"
    Users(db).add("q@example.test", "pw-q-123")
    config = tmp_path / "mailsift.toml"
    config.write_text(f'[store]\nusers = "{db}"\nmail_root = "{tmp_path / "mail"}"\nquota_mb = 7\n')

    def user(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([mailsift_bin, "user", "--config", str(config), *args], capture_output=True,
                              text=True, timeout=60)

    done = user("set", "q@example.test", "--quota-mb", "25")
    assert done.returncode == 0 and "25 MiB" in done.stdout, done.stderr
    assert Users(db).quota_mb("q@example.test") == 25
    done = user("set", "q@example.test", "--quota-mb", "default")
    assert done.returncode == 0 and "default (7 MiB)" in done.stdout, done.stderr
    assert Users(db).quota_mb("q@example.test") is None
    for bad in (["--quota-mb", "-3"], ["--quota-mb", "lots"], []):
        done = user("set", "q@example.test", *bad)
        assert done.returncode == 2 and done.stderr, bad
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text(f'[store]\nusers = "{db}"\nquota_mb = -1\n')
    done = subprocess.run([mailsift_bin, "user", "--config", str(bad_config), "list"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "quota_mb" in done.stderr
