"""Suite-wide fixtures. Components (Postfix, clamd, Redis, our daemons) are started by the
fixtures in tests/harness/, on loopback with free ports, and stopped by PID."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPORA = SHARED / "corpora"
DATA = Path(__file__).resolve().parent / "data"

sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from harness.redis import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator["RedisServer"]:
    """A private redis-server on a free port for this test, stopped by PID after it (the policy
    tests have their own, in their workdir)."""
    from harness.redis import RedisServer

    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mailsift_bin() -> str:
    """The installed console script, as a user runs it."""
    exe = Path(sys.executable).parent / "mailsift"
    assert exe.exists(), f"{exe} missing: run `make venv`"
    return str(exe)


@pytest.fixture(scope="session")
def corpora() -> Path:
    if not CORPORA.is_dir():
        pytest.skip("../shared/corpora not present")
    return CORPORA


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture
def postfix_factory():
    """Make private Postfix instances: `pf = postfix_factory(main={...})`; all stopped and
    removed at the end of the test, pass or fail."""
    from harness.postfix import PostfixInstance, make_workdir

    made: list[PostfixInstance] = []

    def make(main: dict[str, str] | None = None, master_extra=(), start: bool = True,
             workdir: Path | None = None) -> PostfixInstance:
        pf = PostfixInstance(workdir or make_workdir(), main=main, master_extra=master_extra)
        made.append(pf)
        if start:
            pf.start()
        return pf

    yield make
    for pf in made:
        if os.environ.get("MAILSIFT_KEEP_TEST_DIRS"):
            pf.stop()
        else:
            pf.cleanup()


def _models_state() -> list[tuple[str, int, int]]:
    models = ROOT / "models"
    return sorted((str(p.relative_to(models)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in models.rglob("*") if p.is_file()) if models.is_dir() else []


@pytest.fixture(scope="session", autouse=True)
def repo_models_untouched():
    """No test may train or change the repository's own models/ (the default model `make run`
    uses): daemons started by tests get a model dir of their own."""
    before = _models_state()
    yield
    after = _models_state()
    assert after == before, "a test changed the repository's models/ directory"
