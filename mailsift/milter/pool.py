"""Scoring in worker processes, so the milter process (one GIL for every connection) only
speaks the milter protocol and talks to clamd while the model scores on the other cores.

Each worker holds its own ModelHolder (it reloads a renamed model file like the milter does).
A worker that dies breaks the pool: the message being scored gets a 451 (the caller's
exception path) and the next message starts a fresh pool.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable

from mailsift.milter.scan import MessageScanner
from mailsift.verdict import Verdict, VirusResult

log = logging.getLogger("mailsift.milter.pool")

_worker_scanner: MessageScanner | None = None


def _init_worker(dbpath: str, interval: float, required: float, max_bytes: int | None = None,
                 unsure_points: float | None = None) -> None:
    global _worker_scanner
    import signal

    # The milter blocks these for libmilter's signal thread; a worker takes them normally.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGHUP, signal.SIGINT})
    from mailsift.milter.reload import ModelHolder

    holder = ModelHolder(dbpath, interval=interval).start()
    _worker_scanner = MessageScanner(None, holder, required=required, max_bytes=max_bytes,
                                     unsure_points=unsure_points)


def _score(raw: bytes, partial: bool) -> Verdict:
    assert _worker_scanner is not None
    return _worker_scanner.score(raw, partial)


class PooledScanner:
    """Same interface as MessageScanner (virus_async(), score()); score() runs in a worker."""

    def __init__(self, local: MessageScanner, dbpath: str | Path, workers: int, interval: float,
                 timeout: float = 60.0) -> None:
        self.local = local
        self.dbpath = str(dbpath)
        self.workers = workers
        self.interval = interval
        self.timeout = timeout
        self._lock = threading.Lock()
        # forkserver: never fork the threaded milter process itself.
        self._ctx = multiprocessing.get_context("forkserver")
        self._pool = self._new_pool()
        # Start the workers now (and load the model) rather than on the first message.
        for f in [self._pool.submit(_score, b"Subject: warm-up\r\n\r\nwarm up\r\n", False)
                  for _ in range(workers)]:
            f.result(timeout=120)

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_init_worker,
                                   initargs=(self.dbpath, self.interval, self.local.required,
                                             self.local.max_bytes, self.local.unsure_points))

    def virus_async(self, raw: bytes, partial: bool) -> Callable[[], tuple[VirusResult, str | None]]:
        return self.local.virus_async(raw, partial)

    def score(self, raw: bytes, partial: bool) -> Verdict:
        """Scored by a worker (while clamd, handed the message first, scans it)."""
        pool = self._pool
        try:
            return pool.submit(_score, raw, partial).result(timeout=self.timeout)
        except BrokenProcessPool:
            self._renew(pool)
            raise

    def _renew(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                log.error("a scoring worker died; starting a new pool")
                self._pool = self._new_pool()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
