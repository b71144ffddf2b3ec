"""Fixtures for the policy service: `mailsift policy` daemons and a private Redis."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.postfix import make_workdir
from harness.redis import RedisServer
from policy_helpers import PolicyProcess


@pytest.fixture
def workdir() -> Iterator[Path]:
    wd = make_workdir("mailsift-policy-")
    yield wd
    shutil.rmtree(wd, ignore_errors=True)


@pytest.fixture
def start_policy(mailsift_bin: str, workdir: Path) -> Iterator[Callable[..., PolicyProcess]]:
    started: list[PolicyProcess] = []

    def start(name: str = "policy", db: str | None = None, **kwargs: object) -> PolicyProcess:
        proc = PolicyProcess(mailsift_bin, workdir, name,
                             db or f"sqlite:{workdir}/{name}.sqlite", **kwargs)  # type: ignore[arg-type]
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir / "redis")
    server.start()
    yield server
    server.stop()
