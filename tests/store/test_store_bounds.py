"""Bounded file descriptors in `mailsift serve`: idle mailboxes are closed (LRU with a bound)
and the descriptor limit is raised to the hard limit at start, so thousands of distinct LMTP
recipients are delivered under a small limit (each open mailbox holds 4 descriptors)."""

from __future__ import annotations

import gc
import os
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.procs import Daemon
from lmtp_wire import LMTPWire
from mailsift.store.api import Store
from mailsift.store.users import Users, hash_password
from store_harness import StoreServer

pytestmark = pytest.mark.integration

FD_LIMIT = 256
RECIPIENTS = 5000
PER_TRANSACTION = 500


def open_fds(pid: int | None = None) -> int:
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def add_users_cheaply(db: Path, names: list[str]) -> None:
    """Many users at once: one cheap hash for all (LMTP only asks whether a user exists)."""
    Users(db).add("seed@example.test", "seed-password-long")
    encoded = hash_password("unused-password", log2n=4, r=1, p=1)
    now = time.time()
    with sqlite3.connect(db) as conn:
        conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?)", [(n, encoded, now, now) for n in names])


def nofile_of(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = re.findall(r"\d+", line)[:2]
            return int(soft), int(hard)
    raise AssertionError("no open-files line")


def start_limited(srv: StoreServer, soft: int, hard: int) -> Daemon:
    """Start the configured server under a descriptor limit (prlimit execs it: same PID)."""
    srv.daemon = Daemon(["prlimit", f"--nofile={soft}:{hard}", "--", srv.bin, "serve", "--config",
                         str(srv.config), "--log-level", "INFO"], srv.log_path).start()
    srv.daemon.wait_ready(srv.ready, 60, what="mailsift serve")
    return srv.daemon


def test_store_keeps_a_bounded_number_of_idle_mailboxes_open(tmp_path: Path) -> None:
    store = Store(tmp_path / "mail", hostname="t.test", max_open=8)
    before = open_fds()
    for i in range(60):
        store.mailbox(f"u{i}@example.test").deliver(b"Subject: x\r\n\r\nbody\r\n", folder="INBOX")
    gc.collect()
    assert len(store.open_mailboxes()) == 8
    assert open_fds() - before <= 8 * 4 + 4
    # a mailbox held by a caller stays open and unique while pushed out of the recent ones
    held = store.mailbox("held@example.test")
    for i in range(60, 80):
        store.mailbox(f"u{i}@example.test")
    assert store.mailbox("held@example.test") is held
    assert held.list("INBOX") == []
    # an evicted mailbox opens again with its mail
    box = store.mailbox("u0@example.test")
    assert len(box.list("INBOX")) == 1
    store.close()


@pytest.fixture
def memory_root() -> Any:
    """A mail root in memory when the host has /dev/shm: 5,000 new mailboxes (about 55 KB
    each) cost 11 ms apiece there, and several times that on a shared disk."""
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix="mailsift-bounds-", dir=base))
    yield path / "mail"
    shutil.rmtree(path, ignore_errors=True)


def test_5000_distinct_recipients_under_a_256_descriptor_limit(store_server: Callable[..., StoreServer],
                                                               memory_root: Path) -> None:
    names = [f"r{i:04d}@example.test" for i in range(RECIPIENTS)]
    srv = store_server(users={}, start=False, mail_root=str(memory_root))
    srv.mail_root = memory_root
    add_users_cheaply(srv.users_db, names)
    daemon = start_limited(srv, FD_LIMIT, FD_LIMIT)
    assert nofile_of(daemon.pid) == (FD_LIMIT, FD_LIMIT)
    c = LMTPWire(srv.lmtp_addr, timeout=120)
    assert c.cmd("LHLO test").code == 250
    bad: list[Any] = []
    for start in range(0, RECIPIENTS, PER_TRANSACTION):
        batch = names[start:start + PER_TRANSACTION]
        rr, dr = c.transaction("sender@example.org", batch, b"Subject: many\r\n\r\nhello\r\n")
        bad += [(n, r) for n, r in zip(batch, rr) if r.code != 250]
        bad += [(n, r) for n, r in zip(batch, dr) if r.code != 250]
        assert not bad, f"{len(bad)} refused, first {bad[:3]}; log tail: {srv.log()[-2000:]}"
    c.cmd("QUIT")
    c.close()
    assert open_fds(daemon.pid) < FD_LIMIT // 2
    for n in (names[0], names[RECIPIENTS // 2], names[-1]):
        assert len(list((srv.maildir(n) / "new").iterdir())) == 1
    assert daemon.alive()


def test_the_soft_descriptor_limit_is_raised_to_the_hard_limit(store_server: Callable[..., StoreServer]) -> None:
    srv = store_server(start=False)
    daemon = start_limited(srv, 200, 4096)
    assert nofile_of(daemon.pid) == (4096, 4096)
