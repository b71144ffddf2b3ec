"""The event loop the asyncio daemons run on (the IMAP workers, `mailsift serve`, `mailsift
policy`): uvloop's, on libuv, when it is installed (a dependency in setup.cfg), else asyncio's own.

uvloop runs the same coroutines with the loop, transports and stream buffers in C: on the IMAP
session mix of bench/imap_load.py it cut the server's CPU per operation from 0.68 to 0.56 ms
(bench/results/2026-12-07-imap_load-uvloop.txt)."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run(main) on uvloop's loop when uvloop is importable."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)
