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

The lock file also holds the mailbox's change counter: 8 bytes (an unsigned integer in the
host's byte order), mapped shared into every process that has the mailbox open (libc's mmap
through ctypes: no descriptor of its own). Every write transaction on the index moves it,
under this lock, to an odd value when it begins (`change_begins()`) and to the next even one
once it has committed or rolled back (`change_ends()`), so `changes()` (a read of mapped
memory: no system call, no SQLite read transaction) tells a process whether anything in the
index may have changed since it last looked. A reader may use what it read from the index
before while the counter is the even value it read before reading (api.Mailbox caches folder
rows so); an odd value means a write is under way, or its writer died in it: read the index.
"""

from __future__ import annotations

import ctypes
import fcntl
import mmap
import os
import threading
from pathlib import Path
from typing import Callable, Self

_COUNTER_SIZE = 8
_libc: ctypes.CDLL | None = None


def _mapper() -> ctypes.CDLL:
    """libc's mmap and munmap (loaded on first use). Python's mmap.mmap would dup the lock
    file's descriptor: an open mailbox would hold 5 descriptors instead of 4 (docs/store.md)."""
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(None, use_errno=True)
        lib.mmap.restype = ctypes.c_void_p
        lib.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                             ctypes.c_long]
        lib.munmap.restype = ctypes.c_int
        lib.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _libc = lib
    return _libc


def _map_counter(fd: int) -> tuple[int, ctypes.c_uint64]:
    """(address, the 8 bytes at offset 0 of the file, mapped shared)."""
    lib = _mapper()
    addr = lib.mmap(None, _COUNTER_SIZE, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_SHARED, fd, 0)
    if addr is None or addr == ctypes.c_void_p(-1).value:
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of the mailbox lock file: {os.strerror(err)}")
    return addr, ctypes.c_uint64.from_address(addr)


class MailboxLock:
    def __init__(self, path: Path) -> None:
        self.thread_lock = threading.RLock()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._depth = 0
        try:
            if os.fstat(self._fd).st_size < _COUNTER_SIZE:  # (new, or made before the counter)
                os.ftruncate(self._fd, _COUNTER_SIZE)  # (another process's doing the same is harmless)
            self._addr, counter = _map_counter(self._fd)
            self._map: ctypes.c_uint64 | None = counter  # (native byte order: this host's processes only)
        except BaseException:
            os.close(self._fd)
            raise

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

    def changes(self) -> int:
        """The change counter (with the thread lock held: close() unmaps it): an even value read
        twice means no write transaction on the index began in between; odd: one is under way
        (or its writer died in it). -1 once closed."""
        m = self._map
        return m.value if m is not None else -1

    def change_begins(self) -> None:
        """A write transaction begins (the caller holds this lock): the counter becomes odd,
        and differs from every value a reader may have seen (a writer that died in its
        transaction left it odd: it moves on by two)."""
        self._set(lambda c: c + 2 if c & 1 else c + 1)

    def change_ends(self) -> None:
        """The write transaction committed or rolled back: the counter becomes even."""
        self._set(lambda c: c + 1 if c & 1 else c)

    def changing(self, done: bool) -> None:
        """change_begins() (False) or change_ends() (True): IndexDB.on_change."""
        if done:
            self.change_ends()
        else:
            self.change_begins()

    def _set(self, step: Callable[[int], int]) -> None:
        m = self._map
        if m is not None:
            m.value = step(m.value) & 0xFFFFFFFFFFFFFFFF

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def close(self) -> None:
        with self.thread_lock:
            if self._map is not None:
                self._map = None
                _mapper().munmap(self._addr, _COUNTER_SIZE)
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
