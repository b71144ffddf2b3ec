"""`make run`'s pipeline (python -m mailsift.localstack up/down) end to end: Postfix, policy,
milter with clamd and a model, LMTP into the store, POP3 over STLS; `down` stops it by PID."""

from __future__ import annotations

import os
import poplib
import re
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from harness.postfix import make_workdir


def _pids(run: Path) -> dict[str, int]:
    return {p.stem: int(p.read_text()) for p in (run / "pids").glob("*.pid")}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.integration
def test_pipeline_comes_up_delivers_and_stops(corpora: Path, mailsift_bin: str) -> None:
    work = make_workdir("mailsift-run-")
    run, db = work / "run", work / "model"
    pids: dict[str, int] = {}
    try:
        for label, folder in (("--spam", "spamassassin/spam"), ("--ham", "spamassassin/easy_ham")):
            files = sorted((corpora / folder).iterdir())[:230]
            subprocess.run([mailsift_bin, "learn", label, "--no-progress", "--dbpath", str(db),
                            *map(str, files)], check=True, capture_output=True, timeout=300)
        up = subprocess.run([sys.executable, "-m", "mailsift.localstack", "up", "--run-dir", str(run),
                             "--dbpath", str(db), "--free-ports"],
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "mailsift is up on loopback" in up.stdout
        pids = _pids(run)
        assert {"postfix", "clamd", "milter", "serve", "policy"} <= set(pids)
        assert all(_alive(pid) for pid in pids.values())
        if os.geteuid() == 0:  # started as root, each daemon runs as its unprivileged user
            import pwd
            for name, user in (("milter", "mailsift"), ("serve", "mailsift"), ("policy", "mailsift-policy")):
                status = Path(f"/proc/{pids[name]}/status").read_text()
                uids = set(re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups())
                assert uids == {str(pwd.getpwnam(user).pw_uid)}, (name, uids)
        # Every sample went through the milter and was filed by the store.
        mail = run / "mail" / "example.test" / "demo"
        delivered = [p for p in mail.rglob("*") if p.parent.name in ("new", "cur")]
        assert delivered
        for p in delivered:
            head = p.read_bytes().split(b"\n\n", 1)[0]
            assert b"X-Spam-Status: " in head and b"X-Virus-Status: Clean" in head
            assert b"X-Spam-Status: Unknown" not in head  # the model loaded (as the milter's user)
        # The demo user reads its INBOX over POP3 with STLS, with the password make run printed.
        password = (run / "demo-password").read_text().strip()
        assert password in up.stdout
        port = int(re.search(r"POP3 +127\.0\.0\.1:(\d+)", up.stdout).group(1))
        inbox = [p for p in delivered if p.parent.parent == mail]
        pop = poplib.POP3("127.0.0.1", port, timeout=30)
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        pop.stls(ctx)
        pop.user("demo@example.test")
        pop.pass_(password)
        assert pop.stat()[0] == len(inbox)
        pop.quit()
    finally:
        down = subprocess.run([sys.executable, "-m", "mailsift.localstack", "down", "--run-dir", str(run)],
                              capture_output=True, text=True, timeout=120)
        left = list((run / "pids").glob("*.pid")) if (run / "pids").exists() else []
        shutil.rmtree(work, ignore_errors=True)
    assert down.returncode == 0
    assert not left  # every pidfile removed
    assert not [name for name, pid in pids.items() if _alive(pid)]  # and every process gone


def _running(pid: int) -> bool:
    """Alive and not a zombie (the daemons `up` started in this process are its children until
    reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.integration
def test_a_failed_sample_run_leaves_nothing_running(corpora: Path, mailsift_bin: str,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """When the sample mail does not go through (here: Postfix refuses it, as it did when the
    milter died at start), `up` says so, names the logs, and stops every daemon it started."""
    import smtplib

    from mailsift.localstack import stack

    work = make_workdir("mailsift-run-")
    run, db = work / "run", work / "model"
    try:
        for label, folder in (("--spam", "spamassassin/spam"), ("--ham", "spamassassin/easy_ham")):
            files = sorted((corpora / folder).iterdir())[:60]
            subprocess.run([mailsift_bin, "learn", label, "--no-progress", "--dbpath", str(db),
                            *map(str, files)], check=True, capture_output=True, timeout=300)
        started: dict[str, int] = {}

        def refused(run_dir: Path, ports: object) -> list[tuple[str, str]]:
            started.update(_pids(run_dir))
            raise smtplib.SMTPSenderRefused(451, b"4.7.1 Service unavailable - try again later", "s@x.test")

        monkeypatch.setattr(stack, "demo", refused)
        assert stack.main(["up", "--run-dir", str(run), "--dbpath", str(db), "--free-ports"]) == 1
        err = capsys.readouterr().err
        assert "the sample mail did not go through" in err and str(run / "log") in err
        assert {"postfix", "clamd", "milter", "serve", "policy"} <= set(started)
        assert not [name for name, pid in started.items() if _running(pid)]
        assert not list((run / "pids").glob("*.pid"))
    finally:
        subprocess.run([sys.executable, "-m", "mailsift.localstack", "down", "--run-dir", str(run)],
                       capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)
