"""`make run` turns the metrics on: it prints each daemon's /metrics address, and the sample
mail it sends shows there (every sample through the policy service, the milter and LMTP)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from harness.metrics import scrape, train_small_model, value
from harness.postfix import make_workdir

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "classifier" / "samples"


def total(samples, name: str) -> float:
    return sum(v for (n, _l), v in samples.items() if n == name)


def test_make_run_prints_the_metrics_addresses_and_counts_the_samples() -> None:
    work = make_workdir("mailsift-run-metrics-")
    run, db = work / "run", work / "model"
    try:
        train_small_model(db)
        up = subprocess.run([sys.executable, "-m", "mailsift.localstack", "up", "--run-dir", str(run),
                             "--dbpath", str(db), "--free-ports"], capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        found = dict((name, int(port)) for port, name in
                     re.findall(r"http://127\.0\.0\.1:(\d+)/metrics \((milter|serve|policy)\)", up.stdout))
        assert set(found) == {"milter", "serve", "policy"}, up.stdout
        n = len(list(SAMPLES.glob("*.eml")))
        milter, serve, policy = scrape(found["milter"]), scrape(found["serve"]), scrape(found["policy"])
        # `up` returns once every sample is in the store: each went through all three daemons once
        assert value(milter, "mailsift_milter_messages_total", action="accept") == n
        assert total(milter, "mailsift_milter_verdicts_total") == n
        assert value(serve, "mailsift_lmtp_deliveries_total", code="250") == n
        # Postfix permits loopback senders (permit_mynetworks) before asking the policy service:
        # ask it once directly, as smtpd would for a stranger
        assert total(policy, "mailsift_greylist_decisions_total") == 0
        assert ask_policy(run / "sock" / "policy.sock").startswith("DEFER_IF_PERMIT")
        policy = scrape(found["policy"])
        assert value(policy, "mailsift_greylist_decisions_total", reason="new", action="defer_if_permit") == 1
        assert total(policy, "mailsift_greylist_decisions_total") == 1
        assert value(milter, "mailsift_build_info", version=_version(), daemon="milter") == 1
    finally:
        subprocess.run([sys.executable, "-m", "mailsift.localstack", "down", "--run-dir", str(run)],
                       capture_output=True, text=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


def _version() -> str:
    from mailsift import __version__
    return __version__


def ask_policy(path: Path) -> str:
    request = {"request": "smtpd_access_policy", "protocol_state": "RCPT", "client_address": "192.0.2.10",
               "client_name": "mail.sender.test", "sender": "bob@sender.test",
               "recipient": "demo@example.test", "instance": "metrics.1"}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(path))
        sock.sendall("".join(f"{k}={v}\n" for k, v in request.items()).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n\n"):
            chunk = sock.recv(4096)
            assert chunk, reply
            reply += chunk
    return reply.decode().strip().removeprefix("action=")
