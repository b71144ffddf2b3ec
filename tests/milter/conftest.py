"""Fixtures for the milter's tests: a private clamd, a trained model, `mailsift milter` daemons
and Postfix instances wired to them (all on loopback, stopped by PID)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.clamd import ClamdInstance, available
from harness.postfix import make_workdir
from milter_helpers import MilterProcess, corpus_files

TRAIN_EACH = 250


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A 0755 directory under /tmp (Postfix's user must reach sockets in it)."""
    path = make_workdir("mailsift-milter-")
    yield path
    if not os.environ.get("MAILSIFT_KEEP_TEST_DIRS"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def clamd(workdir: Path) -> Iterator[ClamdInstance]:
    if not available():
        pytest.skip("clamd, sigtool or clamav-testfiles not installed")
    inst = ClamdInstance(workdir / "clamd")
    try:
        inst.start()
        yield inst
    finally:
        inst.cleanup()


@pytest.fixture(scope="session")
def trained_dbpath(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory trained through the classifier API on 250 ham + 250 spam."""
    from mailsift.classifier.api import new_model, save_model

    dbpath = tmp_path_factory.mktemp("model")
    model = new_model()
    ham = corpus_files(corpora, "spamassassin/easy_ham")[:TRAIN_EACH]
    spam = corpus_files(corpora, "spamassassin/spam")[:TRAIN_EACH]
    for h, s in zip(ham, spam):
        model.learn(h.read_bytes(), "ham")
        model.learn(s.read_bytes(), "spam")
    save_model(model, dbpath)
    dbpath.chmod(0o755)
    return dbpath


@pytest.fixture
def milter_factory(mailsift_bin: str, workdir: Path) -> Iterator[Callable[..., MilterProcess]]:
    made: list[MilterProcess] = []

    def make(*args: str, name: str = "milter", start: bool = True) -> MilterProcess:
        proc = MilterProcess(mailsift_bin, workdir, list(args), name=name)
        made.append(proc)
        if start:
            proc.start()
        return proc

    yield make
    for proc in made:
        proc.stop()


