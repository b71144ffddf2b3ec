"""The feedback learner's clock: the real time, or, for tests only, the real time plus an offset
read from a file, so that a test can advance a running `mailsift serve` by days.

    clock = clock_from_env()      # time.time unless MAILSIFT_TEST_CLOCK_FILE is set
    clock()                       # seconds since the epoch

MAILSIFT_TEST_CLOCK_FILE names a file holding one number, the seconds to add to the real clock
(read on every call; a missing or unreadable file counts as 0). It is honoured only when the file
belongs to the user the server runs as and no one else can write it (else the real clock is used
and a warning logged), and its use is logged as a warning at start. An environment variable is
set by whoever starts the daemon, who could change its configuration anyway: it opens nothing to
mail users or clients. All the clock moves is when implicit confirmations fall due and which
UTC day the per-user learning cap counts.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger("mailsift.feedback")

ENV_VAR = "MAILSIFT_TEST_CLOCK_FILE"
Clock = Callable[[], float]


class FileClock:
    """time.time() plus the offset in `path` (seconds; advance it by rewriting the file)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def offset(self) -> float:
        try:
            return float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            return 0.0

    def __call__(self) -> float:
        return time.time() + self.offset()


def _trusted(path: Path) -> str | None:
    """Why this file may not steer the clock, or None when it may."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat it: {exc.strerror}"
    if st.st_uid != os.geteuid():
        return f"it belongs to uid {st.st_uid}, not to the server's user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "others can write it"
    return None


def clock_from_env() -> Clock:
    """The test clock when MAILSIFT_TEST_CLOCK_FILE names a trusted file, else time.time."""
    name = os.environ.get(ENV_VAR, "")
    if not name:
        return time.time
    why = _trusted(Path(name))
    if why is not None:
        log.warning("%s=%s ignored (%s): the feedback learner uses the real clock", ENV_VAR, name, why)
        return time.time
    log.warning("feedback learner: TEST CLOCK in use (%s=%s): implicit confirmations and the daily cap "
                "follow the offset in that file; never set this in production", ENV_VAR, name)
    return FileClock(name)
