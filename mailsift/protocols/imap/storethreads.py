"""The worker threads in which IMAP sessions make their blocking store calls.

`StoreThreads.call(fn, *args)` runs fn(*args) in one of N threads and gives its result (or its
exception) to the calling coroutine. It does what `loop.run_in_executor` on a
ThreadPoolExecutor did, minus two layers: the call's outcome goes straight to an asyncio
future of the caller's loop in one `call_soon_threadsafe`, without a concurrent.futures.Future,
its condition variable and the executor's idle-thread semaphore in between (perf: a session
cycle of bench/imap_load.py makes 5 such hops per 10 commands).

As with the executor: a call whose caller was cancelled before a thread took it up is not
made; one a thread has begun runs to its end; at interpreter exit the threads finish the call
they are in (they are not daemon threads) and take no new one.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable

_STOP = None


def _deliver(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """In the caller's loop."""
    if fut.done():  # cancelled meanwhile
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class StoreThreads:
    def __init__(self, threads: int, name_prefix: str = "imap-store") -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._size = threads
        self._prefix = name_prefix
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = False

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if len(self._threads) < self._size:
            self._start()
        self._queue.put((loop, fut, fn, args))
        return await fut

    def _start(self) -> None:
        with self._lock:
            if self._stopping:
                raise RuntimeError("the store threads are stopping")
            if not self._threads:  # the first call: at exit, stop them after their last call
                threading._register_atexit(self.shutdown)  # type: ignore[attr-defined]
            while len(self._threads) < self._size:
                t = threading.Thread(target=self._work, name=f"{self._prefix}_{len(self._threads)}")
                t.start()
                self._threads.append(t)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            loop, fut, fn, args = item
            if fut.cancelled():  # the caller gave up before we began (as the executor skips it)
                continue
            try:
                value, ok = fn(*args), True
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as the executor does
                value, ok = exc, False
            try:
                loop.call_soon_threadsafe(_deliver, fut, ok, value)
            except RuntimeError:  # the caller's loop is closed: nobody waits for it
                pass
            del item, fut, value

    def shutdown(self, wait: bool = True) -> None:
        """No new calls; each thread ends after the calls queued before this one."""
        with self._lock:
            self._stopping = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            for t in threads:
                t.join()
