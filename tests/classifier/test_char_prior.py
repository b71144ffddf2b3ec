"""The first-day character prior (issue 12): a character 4-gram member the default model learns
from the corpora's bodies (not their headers), scored towards ham only while the first-day guard
is up and fading with it; kept in the model file, read alike by the numpy-free scorer, shown by
`mailsift learn --dump`."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier import modelfile
from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.bodybytes import body_head
from mailsift.classifier.model import SpamModel
from mailsift.classifier.persist import MODEL_FILE, SIDECAR_FILE, export_state, import_state
from mailsift.classifier.scorer import Scorer, load_scorer

REPO = Path(__file__).resolve().parents[2]


def _files(corpora: Path, folder: str, n: int, skip: int = 0) -> list[bytes]:
    return [p.read_bytes() for p in sorted((corpora / folder).iterdir())[skip:skip + n] if p.is_file()]


@pytest.fixture(scope="module")
def corpus(corpora: Path) -> list[tuple[bytes, str]]:
    ham, spam = _files(corpora, "spamassassin/easy_ham", 150), _files(corpora, "spamassassin/spam_2", 150)
    return [m for h, s in zip(ham, spam) for m in ((h, "ham"), (s, "spam"))]


def _prior(corpus: list[tuple[bytes, str]], with_chars: bool = True, **settings: object) -> SpamModel:
    model = new_model(guard_until=20, **settings)
    for raw, label in corpus:
        model.learn(raw, label)
    model.mark_prior(corpus if with_chars else ())
    return model


@pytest.fixture(scope="module")
def prior(corpus: list[tuple[bytes, str]]) -> SpamModel:
    return _prior(corpus)


@pytest.fixture(scope="module")
def test_mail(corpora: Path) -> list[bytes]:
    return (_files(corpora, "spamassassin/easy_ham_2", 40) + _files(corpora, "spamassassin/hard_ham", 20)
            + _files(corpora, "spamassassin/spam", 40) + _files(corpora, "csdmc2010/ham", 20)
            + _files(corpora, "csdmc2010/spam", 20))


def test_body_head_is_the_bytes_after_the_header_block() -> None:
    assert body_head(b"Subject: a\r\nX: b\r\n\r\nhello\r\n\r\nthere", 100) == b"hello\r\n\r\nthere"
    assert body_head(b"Subject: a\n\nbody", 2) == b"bo"
    assert body_head(b"Subject: only a header\r\n", 100) == b""


def test_the_prior_learns_the_bodies_and_lowers_the_first_days_ham_scores(
        prior: SpamModel, corpus: list[tuple[bytes, str]], test_mail: list[bytes]) -> None:
    plain = _prior(corpus, with_chars=False)
    assert plain.char_prior is None and prior.char_prior is not None
    assert prior.char_prior.dtype == np.float32 and np.count_nonzero(prior.char_prior) > 1000
    assert prior.chars.learned == 0 and not prior.chars.coef.any()  # the raw-bytes member is still the site's
    assert prior.char_prior_share() == 1.0  # the first day: all of it
    # it reads the body only: another header block changes nothing, another body does
    ham = test_mail[0]
    head, _, body = ham.partition(b"\n\n")
    other_head = b"Received: from mx.elsewhere.example by relay.example\nSubject: x\n\n" + body
    assert prior.char_prior_z(ham) == prior.char_prior_z(other_head)
    assert prior.char_prior_z(ham) != prior.char_prior_z(head + b"\n\n" + b"cheap pills, buy now! " * 20)
    # towards ham only: a message it takes for ham scores lower than without it, one it takes
    # for spam exactly as without it
    lower = same = 0
    for raw in test_mail:
        z, p, p0 = prior.char_prior_z(raw), prior.spamminess(raw), plain.spamminess(raw)
        if z < 0:
            assert p < p0
            lower += 1
        else:
            assert p == p0
            same += 1
    assert lower >= 20 and same >= 10


def test_it_fades_with_the_guard_and_then_costs_nothing(corpus: list[tuple[bytes, str]], corpora: Path,
                                                        test_mail: list[bytes]) -> None:
    model = _prior(corpus)
    plain = _prior(corpus, with_chars=False)
    site = _files(corpora, "spamassassin/easy_ham_2", 10, skip=100) + _files(corpora, "spamassassin/spam", 10, skip=100)
    for k, raw in enumerate(site[:10]):  # half of guard_until (20): half the weight
        for m in (model, plain):
            m.learn(raw, "ham" if k < 5 else "spam")
    assert model.guard() == 2.5 and model.char_prior_share() == 0.5
    raw = next(r for r in test_mail if model.char_prior_z(r) < -1.0)
    idx, _ = model.features(raw)
    contrib, const = model._contributions(idx)
    words = float(contrib.sum()) + const
    chars = model.settings.char_weight * model.chars.z(model.char_features(raw))
    assert model.spamminess(raw) == pytest.approx(
        1 / (1 + math.exp(-model._z(words, chars + 0.5 * model.char_prior_z(raw)))), rel=1e-12)
    for k, raw in enumerate(site[10:]):
        for m in (model, plain):
            m.learn(raw, "ham" if k < 5 else "spam")
    assert model.guard() == 0.0 and model.char_prior_share() == 0.0
    # once the guard is down the prior is not read: no body 4-grams, the verdicts of a model without it
    fresh = [bytes(r) for r in test_mail]  # new bytes objects: no cached 4-grams
    model.__dict__.pop("_last_body", None)
    for r in fresh:
        assert model.verdict(r).score == plain.verdict(r).score
    assert "_last_body" not in model.__dict__


def _same_verdict(a, b) -> None:  # noqa: ANN001
    assert (a.label, a.score, a.required, a.note, a.clues) == (b.label, b.score, b.required, b.note, b.clues)


@pytest.mark.parametrize("bits", [16, 18])  # 2^16 stored dense, 2^18 as columns and weights
def test_model_file_backup_and_scorer_carry_it(tmp_path: Path, corpus: list[tuple[bytes, str]],
                                               test_mail: list[bytes], bits: int) -> None:
    model = _prior(corpus, char_bits=bits)
    assert model.char_prior is not None
    model.learn(test_mail[1], "ham")  # guard 4.75: the prior's share 0.95
    save_model(model, tmp_path / "db")
    head = modelfile.read_header((tmp_path / "db" / MODEL_FILE).read_bytes(), (tmp_path / "db" / MODEL_FILE).stat().st_size)
    assert ("char_prior_keys" in head["sections"]) == (bits == 18)
    loaded = load_model(tmp_path / "db")
    assert np.array_equal(loaded.char_prior, model.char_prior)
    assert loaded.char_prior_intercept == model.char_prior_intercept
    scorer = load_scorer(tmp_path / "db")
    assert scorer is not None and scorer.char_prior_share() == model.char_prior_share() == 0.95
    samples = test_mail + [b"", b"x", b"Subject: hi\r\n\r\n", b"Subject: hi\r\n\r\nabc", b"\xff" * 5000]
    moved = 0
    for raw in samples:
        _same_verdict(model.verdict(raw), loaded.verdict(raw))
        _same_verdict(model.verdict(raw), scorer.verdict(raw))
        assert abs(model.spamminess(raw) - scorer.spamminess(raw)) <= 1e-12
        moved += scorer.char_prior_z(raw) < 0
    assert moved >= 20
    export_state(model, tmp_path / "b.npz", [])
    back, _ = import_state(tmp_path / "b.npz")
    assert np.array_equal(back.char_prior, model.char_prior)
    assert back.spamminess(test_mail[5]) == model.spamminess(test_mail[5])


def test_a_model_file_from_before_the_prior_loads_without_it(tmp_path: Path, prior: SpamModel,
                                                             corpus: list[tuple[bytes, str]],
                                                             test_mail: list[bytes]) -> None:
    """A model.bin written before the character prior existed (no section, no settings for it)
    loads and scores as the words' part alone, in the model and in the numpy-free scorer."""
    plain = _prior(corpus, with_chars=False)
    save_model(prior, tmp_path / "db")
    path = tmp_path / "db" / MODEL_FILE
    buf = path.read_bytes()
    head = modelfile.read_header(buf, len(buf))
    arrays = modelfile.arrays(buf, head)
    del head["char_prior"], arrays["char_prior_coef"]
    for key in ("char_prior_bytes", "char_prior_weight"):
        del head["settings"][key]
    compressed = {k for k, e in head["sections"].items() if e["codec"] != "raw"}
    delta = frozenset(k for k, e in head["sections"].items() if e["codec"] == "zlib-delta")
    del head["sections"]
    with open(path, "wb") as fh:
        modelfile.write(fh, head, arrays, compressed, delta)
    meta = json.loads((tmp_path / "db" / SIDECAR_FILE).read_text())
    import hashlib
    meta["model_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "db" / SIDECAR_FILE).write_text(json.dumps(meta))
    old = load_model(tmp_path / "db")
    assert old.char_prior is None and old.char_prior_share() == 0.0
    scorer = Scorer(path, meta)
    assert scorer.char_prior_share() == 0.0
    for raw in test_mail[:30]:
        assert old.spamminess(raw) == pytest.approx(plain.spamminess(raw), rel=1e-9)
        assert abs(scorer.spamminess(raw) - old.spamminess(raw)) <= 1e-12


def test_the_default_model_has_it_and_dump_shows_it(tmp_path: Path, corpora: Path) -> None:
    from mailsift.classifier.default_model import ensure_default_model

    mini = tmp_path / "corpora"
    for folder, n in (("spamassassin/easy_ham", 55), ("spamassassin/spam_2", 55)):  # ready: 50 of each
        (mini / folder).mkdir(parents=True)
        for p in sorted((corpora / folder).iterdir())[:n]:
            shutil.copy(p, mini / folder / p.name)
    db = tmp_path / "models"
    assert ensure_default_model(db, mini, out=io.StringIO()) is True
    assert load_model(db).char_prior is not None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-m", "mailsift", "learn", "--dump", "--dbpath", str(db)],
                         capture_output=True, text=True, env=env, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("character prior:"))
    assert "first 1000 body bytes" in line and "weight 1 now" in line
