"""The store threads of the IMAP sessions (protocols/imap/storethreads.py) keep what
loop.run_in_executor on a ThreadPoolExecutor gave: results and exceptions to the caller, calls
in parallel up to the thread count, a call its caller gave up on before it began is not made,
and at exit a call in progress is finished, not cut off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mailsift.protocols.imap.storethreads import StoreThreads


def test_results_and_exceptions_reach_the_caller() -> None:
    def boom() -> None:
        raise KeyError("gone")

    async def main() -> None:
        threads = StoreThreads(2)
        total, name = await threads.call(lambda a, b: (a + b, threading.current_thread().name), 2, 3)
        assert total == 5 and name.startswith("imap-store_") and name != threading.current_thread().name
        assert await threads.call(sum, [1, 2, 3]) == 6
        with pytest.raises(KeyError, match="gone"):
            await threads.call(boom)
        threads.shutdown()
    asyncio.run(main())


def test_calls_run_in_parallel_up_to_the_thread_count() -> None:
    async def main() -> float:
        threads = StoreThreads(4)
        t0 = time.monotonic()
        await asyncio.gather(*(threads.call(time.sleep, 0.3) for _ in range(4)))
        took = time.monotonic() - t0
        threads.shutdown()
        return took
    assert asyncio.run(main()) < 0.9


def test_a_call_given_up_before_it_began_is_not_made() -> None:
    made: list[str] = []

    async def main() -> None:
        threads = StoreThreads(1)
        release = threading.Event()
        busy = asyncio.ensure_future(threads.call(release.wait, 5))
        await asyncio.sleep(0.05)                  # the one thread is taken
        queued = asyncio.ensure_future(threads.call(made.append, "queued"))
        await asyncio.sleep(0.05)
        queued.cancel()                            # its caller goes away before a thread is free
        release.set()
        assert await busy is True
        assert await threads.call(made.append, "after") is None  # the thread is free again
        threads.shutdown()
    asyncio.run(main())
    assert made == ["after"]


def test_at_exit_a_call_in_progress_is_finished(tmp_path: Path) -> None:
    done = tmp_path / "done"
    code = textwrap.dedent(f"""
        import asyncio, time
        from mailsift.protocols.imap.storethreads import StoreThreads

        def slow_write():
            time.sleep(0.5)
            open({str(done)!r}, "w").write("written")

        async def main():
            threads = StoreThreads(2)
            try:
                await asyncio.wait_for(threads.call(slow_write), 0.1)  # the caller gives up
            except asyncio.TimeoutError:
                pass

        asyncio.run(main())
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
    assert done.read_text() == "written"
