"""Daemon.wait_ready: a start that fails says why at once; a slow one times out and is stopped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from harness.procs import Daemon


def test_a_daemon_that_exits_during_start_fails_at_once_with_its_log(tmp_path: Path) -> None:
    d = Daemon(["sh", "-c", "echo cannot bind; exit 7"], tmp_path / "d.log").start()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)exited with status 7.*cannot bind"):
        d.wait_ready(lambda: False, timeout=60, what="thing")
    assert time.monotonic() - t0 < 10


def test_a_daemon_that_never_gets_ready_times_out_and_is_stopped(tmp_path: Path) -> None:
    d = Daemon(["sleep", "60"], tmp_path / "d.log").start()
    with pytest.raises(TimeoutError, match="waiting for sleeper"):
        d.wait_ready(lambda: False, timeout=0.5, what="sleeper")
    assert not d.alive()


def test_ready_returns_the_daemon(tmp_path: Path) -> None:
    d = Daemon(["sleep", "60"], tmp_path / "d.log").start()
    try:
        assert d.wait_ready(lambda: True, timeout=5) is d
    finally:
        d.stop()
