"""When an empty model starts deciding (readiness.py, issue 12): unsure until it has learned 50
ham and 50 spam, then deciding with `required` raised by a guard that shrinks to nothing at 200
of each; said in the Verdict (X-Spam-Report) and by `mailsift learn --dump`; the same from the
numpy-free scorer; and, on a small 30%-ham stream with implicit feedback, deciding long before a
model that waits for 200 of each."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from corpus_files import corpus_files
from mailsift.classifier.api import new_model, save_model
from mailsift.classifier.corpus import Entry
from mailsift.classifier.evaluate import Feedback, run_feedback
from mailsift.classifier.metrics import decides_from
from mailsift.classifier.readiness import MIN_LEARNED, READY_FROM
from mailsift.classifier.scorer import load_scorer
from mailsift.verdict import verdict_headers


@pytest.fixture(scope="module")
def mail(corpora: Path) -> dict[str, list[bytes]]:
    return {
        "ham": corpus_files(corpora, "spamassassin/easy_ham", MIN_LEARNED),
        "spam": corpus_files(corpora, "spamassassin/spam_2", MIN_LEARNED),
        "ham_test": corpus_files(corpora, "spamassassin/easy_ham", 40, skip=MIN_LEARNED),
        "spam_test": corpus_files(corpora, "spamassassin/spam_2", 40, skip=MIN_LEARNED),
    }


def test_unsure_until_50_of_each_then_cautious_until_200(mail: dict[str, list[bytes]]) -> None:
    assert (READY_FROM, MIN_LEARNED) == (50, 200)
    model = new_model()
    for r in mail["spam"][:120]:
        model.learn(r, "spam")
    for r in mail["ham"][:49]:
        model.learn(r, "ham")
    # before the evidence exists: unsure, and the report says why
    v = model.verdict(mail["spam_test"][0])
    assert v.label == "unsure" and v.probability is not None and v.required == 5.0
    assert v.note == "learning: unsure until the model has learned 50 ham and 50 spam (49 ham, 120 spam so far)"
    headers = dict(verdict_headers(v).headers)
    assert headers["X-Spam-Report"].startswith("learning: unsure until the model has learned 50 ham")
    assert "MAILSIFT_UNSURE" in headers["X-Spam-Status"]
    assert not model.ready()

    # the 50th ham: it decides, with `required` raised by 5 * (1 - 50/200)
    model.learn(mail["ham"][49], "ham")
    assert model.ready() and model.guard() == 3.75
    verdicts = [model.verdict(r) for r in mail["ham_test"] + mail["spam_test"]]
    assert all(v.required == 8.75 for v in verdicts)
    assert verdicts[0].note == ("learning: required raised by 3.75 until the model has learned 200 ham and "
                                "200 spam (50 ham, 120 spam so far)")
    ham, spam = verdicts[:40], verdicts[40:]
    assert not any(v.is_spam for v in ham), [v.score for v in ham]
    assert sum(v.label == "ham" for v in ham) >= 35  # decided, not unsure
    assert sum(v.is_spam for v in spam) >= 5, [(v.score, v.label) for v in spam]  # it catches some spam already
    # a spam between the site's threshold and the raised one is not filed to Junk yet
    between = [v for v in spam if 5.0 + 1.0 <= v.score < 8.75 - 1.0]
    assert between and all(not v.is_spam for v in between)

    # the guard shrinks with the smaller class and is gone at 200 of each
    for r in mail["ham"][50:125]:
        model.learn(r, "ham")
    assert model.guard() == 2.0  # 5 * (1 - 120/200): spam is the smaller class now
    for r in mail["ham"][125:]:
        model.learn(r, "ham")
    for r in mail["spam"][120:]:
        model.learn(r, "spam")
    assert (model.n_ham_, model.n_spam_) == (200, 200)
    v = model.verdict(mail["spam_test"][0])
    assert model.guard() == 0.0 and v.required == 5.0 and v.note is None


def test_scorer_and_dump_say_the_same(mail: dict[str, list[bytes]], tmp_path: Path) -> None:
    model = new_model()
    for h, s in zip(mail["ham"][:80], mail["spam"][:130]):
        model.learn(h, "ham")
        model.learn(s, "spam")
    save_model(model, tmp_path)
    scorer = load_scorer(tmp_path)
    assert scorer is not None and scorer.ready() and scorer.guard() == 3.0
    for r in mail["ham_test"][:10] + mail["spam_test"][:10]:
        a, b = model.verdict(r), scorer.verdict(r)
        assert (a.required, a.unsure, a.note, a.label) == (b.required, b.unsure, b.note, b.label)
    assert a.required == 5.0 + 3.0 and "(80 ham, 80 spam so far)" in (a.note or "")
    out = subprocess.run([sys.executable, "-m", "mailsift", "learn", "--dump", "--dbpath", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout
    assert "ready: yes\n" in out, out
    assert ("guard: on, learning: required raised by 3 until the model has learned 200 ham and 200 spam "
            "(80 ham, 80 spam so far)") in out, out


def _stream(corpora: Path, n_ham: int, n_spam: int, seed: int) -> list[Entry]:
    """n_ham ham and n_spam spam of the corpora, shuffled (seeded) into one stream."""
    def paths(folder: str, n: int) -> list[Path]:
        return sorted(p for p in (corpora / folder).iterdir() if p.is_file())[:n]
    entries = [Entry("ham", p) for p in paths("spamassassin/easy_ham", n_ham)]
    entries += [Entry("spam", p) for p in paths("spamassassin/spam_2", n_spam)]
    random.Random(seed).shuffle(entries)
    return entries


def test_a_30_percent_ham_stream_with_implicit_feedback_decides_early(corpora: Path) -> None:
    """Implicit feedback from an empty model: unsure spam is an error, learned at once; ham only
    arrives when confirmed, 100 messages late. Waiting for 200 of each (the old rule) this
    stream of 150 ham is never decided; from 50 ham it is, and sends no ham to Junk."""
    stream = _stream(corpora, 150, 350, seed=1)
    records = run_feedback(stream, new_model(), Feedback.parse("implicit:100"))
    first = decides_from(records)
    assert first is not None, "never decided"
    # unsure before the evidence exists: the 50th ham of the stream is confirmed 100 messages later
    fiftieth_ham = [i for i, e in enumerate(stream, 1) if e.label == "ham"][READY_FROM - 1]
    assert first > fiftieth_ham + 100 - 1
    assert all(r.judge == "unsure" for r in records[:first - 1])
    assert first <= fiftieth_ham + 100 + 10
    after = records[first - 1:]
    assert not [r for r in after if r.truth == "ham" and r.judge == "spam"]
    spam = [r for r in after if r.truth == "spam"]
    assert sum(r.judge == "spam" for r in spam) >= 0.8 * len(spam)

    waiting = run_feedback(stream, new_model(ready_from=MIN_LEARNED), Feedback.parse("implicit:100"))
    assert decides_from(waiting) is None
