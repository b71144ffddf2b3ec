"""Fixtures for the milter's tests: a private clamd, a trained model, `mailsift milter` daemons
and Postfix instances wired to them (all on loopback, stopped by PID)."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.clamd import ClamdInstance, available
from harness.postfix import make_workdir
from harness.procs import Daemon, unix_ready, wait_for

TRAIN_EACH = 250


def corpus_files(corpora: Path, folder: str) -> list[Path]:
    return sorted(p for p in (corpora / folder).iterdir() if p.is_file())


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
    inst = ClamdInstance(workdir / "clamd").start()
    yield inst
    inst.stop()


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


class MilterProcess:
    """`mailsift milter` started as a user runs it."""

    def __init__(self, mailsift_bin: str, workdir: Path, args: list[str], name: str = "milter") -> None:
        self.socket = workdir / name / "milter.sock"
        self.args = args
        self.mailsift_bin = mailsift_bin
        self.daemon: Daemon | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def spec(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> "MilterProcess":
        argv = [self.mailsift_bin, "milter", "--socket", self.spec, *self.args]
        self.daemon = Daemon(argv, self.log_path).start()
        wait_for(lambda: unix_ready(self.socket) or self._dead(), 30, what="milter socket")
        return self

    def _dead(self) -> bool:
        if self.daemon is not None and not self.daemon.alive():
            raise RuntimeError(f"milter exited:\n{self.log()}")
        return False

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def kill9(self) -> None:
        if self.daemon is not None:
            self.daemon.kill9()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


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


def milter_main(milter: MilterProcess, **extra: str) -> dict[str, str]:
    """main.cf settings that put a milter in front of a test Postfix, as postfix-config says."""
    settings = {
        "smtpd_milters": milter.spec,
        "non_smtpd_milters": "",
        "milter_protocol": "6",
        "milter_default_action": "tempfail",
        "milter_mail_macros": "i {auth_type} {auth_authen} {auth_author} {mail_addr}",
        "milter_end_of_data_macros": "i",
    }
    settings.update(extra)
    return settings


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def header_values(msg: email.message.Message, name: str) -> list[str]:
    return [str(v) for v in (msg.get_all(name) or [])]
