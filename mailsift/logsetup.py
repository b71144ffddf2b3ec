"""Logging set-up for the entry points (never done at import time)."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    # Caller, thread and multiprocessing details are not in the format: not collecting them
    # saves ~2 of ~11 us per record (the logging HOWTO's "Optimization"); the milter writes a
    # record per message.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(name)s[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
