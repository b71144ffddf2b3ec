"""The mailbox lock: one user's store operations, one at a time, across threads AND processes.

`mailsift serve` may answer IMAP in several worker processes (serve/workers.py) beside the main
process (LMTP, POP3, the feedback learner). Each process has its own Mailbox object and SQLite
connection on the same index; every change reads the folder row (UIDNEXT, HIGHESTMODSEQ),
renames files and commits. This lock makes each such read-rename-commit sequence atomic for the
whole host, as the in-process RLock alone did when one process owned the mail root:

    lock = MailboxLock(path / "mailsift-index.lock")
    with lock: ...            # re-entrant in the owning thread; flock(LOCK_EX) on the outermost entry
    with lock.thread_lock: ...  # this process's threads only (read-only lookups, event lists)

flock locks belong to the open file, and the RLock is taken first, so one descriptor per
Mailbox serves all its threads.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Self


class MailboxLock:
    def __init__(self, path: Path) -> None:
        self.thread_lock = threading.RLock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._depth = 0

    def acquire(self) -> bool:
        self.thread_lock.acquire()
        if self._depth == 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self.thread_lock.release()
                raise
        self._depth += 1
        return True

    def acquire_nowait(self) -> bool:
        """acquire() only if that means no wait: False (nothing held) when another thread of
        this process or another process holds the lock."""
        if not self.thread_lock.acquire(blocking=False):
            return False
        if self._depth == 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.thread_lock.release()
                return False
            except BaseException:
                self.thread_lock.release()
                raise
        self._depth += 1
        return True

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self.thread_lock.release()

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def close(self) -> None:
        with self.thread_lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
