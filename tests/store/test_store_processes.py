"""The store shared by several processes (mailsift serve and its IMAP workers): the host-wide
mailbox lock, \\Recent claimed in the index, a cached listing never outliving another process's
change, and the loop-thread read that never waits for a lock. Two Store objects on one mail
root stand for two processes (each has its own SQLite connection, caches and lock file
descriptor); the lock test uses a real second process."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

from mailsift.store.api import Store
from mailsift.store.locks import MailboxLock

USER = "dora@example.test"


def msg(subject: str) -> bytes:
    return f"From: a@example.test\r\nSubject: {subject}\r\n\r\nbody {subject}\r\n".encode()


def _hold_lock(path: str, held: "multiprocessing.synchronize.Event", release: "multiprocessing.synchronize.Event") -> None:
    lock = MailboxLock(Path(path))
    with lock:
        held.set()
        release.wait(10)


def test_the_mailbox_lock_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    ctx = multiprocessing.get_context("spawn")
    held, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold_lock, args=(str(path), held, release))
    other.start()
    try:
        assert held.wait(20)
        lock = MailboxLock(path)
        got = threading.Event()

        def take() -> None:
            with lock:
                got.set()
        t = threading.Thread(target=take)
        t.start()
        assert not got.wait(0.5)  # the other process holds it
        release.set()
        assert got.wait(10)  # and we get it once it lets go
        t.join()
        with lock, lock:  # re-entrant in one thread
            pass
        lock.close()
    finally:
        release.set()
        other.join(10)


def test_recent_is_claimed_once_across_stores(tmp_path: Path) -> None:
    a, b = Store(tmp_path), Store(tmp_path)
    try:
        box_a, box_b = a.mailbox(USER), b.mailbox(USER)
        uids = [box_a.deliver(msg(f"m{i}")).uid for i in range(3)]
        uv = box_a.folder("INBOX").uidvalidity
        assert box_b.claim_recent("INBOX", uv, uids[-1], readonly=True) == 0  # a peek claims nothing
        assert box_a.claim_recent("INBOX", uv, uids[-1]) == 0      # A takes all three
        assert box_b.claim_recent("INBOX", uv, uids[-1]) == uids[-1]  # none left for B
        new = box_b.deliver(msg("m3")).uid
        assert box_b.claim_recent("INBOX", uv, new) == uids[-1]     # B takes the new one
        assert box_a.claim_recent("INBOX", uv, new) == new
        assert box_a.claim_recent("INBOX", uv + 1, new) == 0        # another UIDVALIDITY starts over
    finally:
        a.close()
        b.close()


def test_a_cached_listing_never_outlives_another_process_change(tmp_path: Path) -> None:
    a, b = Store(tmp_path), Store(tmp_path)
    try:
        box_a, box_b = a.mailbox(USER), b.mailbox(USER)
        uids = [box_a.deliver(msg(f"m{i}")).uid for i in range(3)]
        assert [m.uid for m in box_a.list("INBOX")] == uids  # cached in A
        box_b.store_flags("INBOX", [uids[0]], ["\\Flagged"])
        assert "\\Flagged" in box_a.list("INBOX")[0].flags
        box_b.store_flags("INBOX", [uids[1]], ["\\Deleted"])
        box_b.expunge("INBOX")
        assert [m.uid for m in box_a.list("INBOX")] == [uids[0], uids[2]]
        # a file removed by an outside program, noticed by B's sync: A's listing goes stale too
        before = box_a.folder("INBOX").highestmodseq
        path = next(p for p in (box_a.path / "new").iterdir() if p.is_file())
        gone = next(m.uid for m in box_a.list("INBOX") if path.name.startswith(m.key))
        os.unlink(path)
        box_b.sync("INBOX")
        assert box_a.folder("INBOX").highestmodseq > before
        assert gone not in [m.uid for m in box_a.list("INBOX")]
    finally:
        a.close()
        b.close()


def test_read_nowait_never_waits_for_the_lock(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        box = store.mailbox(USER)
        uid = box.deliver(msg("r")).uid
        assert box.read_nowait("INBOX", uid) == box.read("INBOX", uid)
        holding, done = threading.Event(), threading.Event()

        def hold() -> None:
            with box._lock:
                holding.set()
                done.wait(10)
        t = threading.Thread(target=hold)
        t.start()
        assert holding.wait(10)
        t0 = time.monotonic()
        assert box.read_nowait("INBOX", uid) is None  # busy: the caller goes to a thread instead
        assert time.monotonic() - t0 < 0.5
        done.set()
        t.join()
    finally:
        store.close()


def test_a_worker_that_cannot_be_started_is_retried_not_given_up(monkeypatch, caplog) -> None:
    """Starting a replacement worker can fail (after run_as the interpreter may be unreadable,
    or the host is out of processes): the pool logs it and tries again, backing off, instead of
    losing that worker's slot for good (the supervising task used to die with the exception)."""
    import asyncio
    import logging

    from mailsift.serve import workers as wk
    from mailsift.store.settings import StoreSettings

    monkeypatch.setattr(wk, "RESPAWN_DELAY", 0.01)
    pool = wk.WorkerPool(StoreSettings(), store=None, listeners={}, count=1)
    calls: list[float] = []

    async def spawn(w: object) -> None:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise PermissionError(13, "Permission denied", "/usr/bin/python3")

    pool._spawn = spawn  # type: ignore[method-assign]
    caplog.set_level(logging.ERROR, logger="mailsift.serve.workers")
    asyncio.run(asyncio.wait_for(pool._respawn(pool.workers[0]), 10))
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.9 * 0.02 and calls[2] - calls[1] >= 0.9 * 0.04  # it backs off
    assert caplog.text.count("cannot start imap worker 0 again") == 2
