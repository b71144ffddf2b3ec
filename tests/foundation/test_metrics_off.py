"""Metrics are off by default: the daemons' hooks do nothing and prometheus_client is never
imported (it costs ~70 ms to import and the hooks sit on the milter's per-message path)."""

from __future__ import annotations

import subprocess
import sys


def test_hooks_are_no_ops_until_started() -> None:
    code = """
import sys
from mailsift.ops import metrics
import mailsift.milter.app, mailsift.policy.server, mailsift.serve.server, mailsift.protocols.lmtp
import mailsift.protocols.pop3, mailsift.serve.workers, mailsift.feedback.learner
from mailsift.verdict import Verdict
metrics.milter_message(Verdict(probability=0.9, score=5.0), "accept", None, 0.01)
metrics.milter_failure(); metrics.session("imap"); metrics.login("pop3", False)
metrics.lmtp_replies(["250 2.0.0 ok"]); metrics.learn_event("move into Junk", "spam", "learned")
metrics.greylist("new", "DEFER_IF_PERMIT greylisted"); metrics.remote(("session", "imap"))
assert "prometheus_client" not in sys.modules, "imported"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_started_hooks_count() -> None:
    """The same hooks, once a registry is built, count into it (in-process, no HTTP)."""
    code = """
from mailsift.ops import metrics
from mailsift.verdict import Verdict, VirusResult
reg = metrics.build_registry("milter")
v = Verdict(probability=0.99, score=7.6).with_virus(VirusResult("clean"))
for _ in range(3):
    metrics.milter_message(v, "accept", None, 0.01)
metrics.milter_message(None, "accept", None, 0.0, skipped=True)
get = reg.get_sample_value
assert get("mailsift_milter_messages_total", {"action": "accept"}) == 4
assert get("mailsift_milter_verdicts_total", {"label": "spam"}) == 3
assert get("mailsift_milter_skipped_total") == 1
assert get("mailsift_milter_score_bucket", {"le": "7.5"}) == 0
assert get("mailsift_milter_score_bucket", {"le": "10.0"}) == 3
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


def test_scraping_the_model_imports_no_classifier(tmp_path) -> None:
    """The model gauges read the sidecar by name: a scrape must not pull numpy and the model into
    a milter process that scores in worker processes."""
    from mailsift.classifier.persist import SIDECAR_FILE
    from mailsift.ops.metrics import SIDECAR_FILE as NAMED

    assert NAMED == SIDECAR_FILE
    (tmp_path / SIDECAR_FILE).write_text('{"generation": 7, "saved_at": 1.0, "n_ham": 3, "n_spam": 4}')
    code = f"""
import sys
from prometheus_client import generate_latest
from mailsift.ops import metrics
text = generate_latest(metrics.build_registry("milter", {str(tmp_path)!r})).decode()
assert "mailsift_model_generation 7.0" in text, text
assert 'mailsift_model_messages{{label="spam"}} 4.0' in text, text
assert "numpy" not in sys.modules and "mailsift.classifier.model" not in sys.modules
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr
