"""The model file (format 3, modelfile.py): no pickle, only the columns seen, conversion of old
models, and the numpy-free scorer's verdicts against the full model's, on the shared corpora."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from corpus_files import corpus_files
from mailsift.classifier.api import new_model
from mailsift.classifier.model import SpamModel
from mailsift.classifier.persist import (LEGACY_BACKUP, LEGACY_MODEL_FILE, MODEL_FILE, SIDECAR_FILE, _versions,
                                         load_model, save_model)


@pytest.fixture(scope="module")
def mail(corpora: Path) -> dict[str, list[bytes]]:
    return {
        "ham": corpus_files(corpora, "spamassassin/easy_ham", 240),
        "spam": corpus_files(corpora, "spamassassin/spam_2", 240),
        "test": corpus_files(corpora, "spamassassin/easy_ham_2", 120) + corpus_files(corpora, "spamassassin/spam", 120)
        + corpus_files(corpora, "csdmc2010/ham", 60) + corpus_files(corpora, "csdmc2010/spam", 60),
    }


@pytest.fixture(scope="module")
def trained(mail: dict[str, list[bytes]]) -> SpamModel:
    model = new_model()
    for h, s in zip(mail["ham"], mail["spam"]):
        model.learn(h, "ham")
        model.learn(s, "spam")
    model.unlearn(mail["spam"][0], "spam")  # counts back to 0 for some columns, LR weights left
    model.learn(mail["spam"][0], "spam")
    return model


def save_legacy(model: SpamModel, d: Path) -> None:
    """The model as mailsift wrote it before format 3: a joblib pickle and a format-2 sidecar."""
    import joblib

    d.mkdir(parents=True, exist_ok=True)
    with open(d / LEGACY_MODEL_FILE, "wb") as fh:
        joblib.dump(model, fh)
    os.chmod(d / LEGACY_MODEL_FILE, 0o640)
    digest = hashlib.sha256((d / LEGACY_MODEL_FILE).read_bytes()).hexdigest()
    meta = {"format_version": 2, "versions": _versions(), "saved_at": time.time(), "model_sha256": digest,
            **model.describe()}
    (d / SIDECAR_FILE).write_text(json.dumps(meta))


def test_model_file_grows_with_what_was_learned(tmp_path: Path, trained: SpamModel) -> None:
    save_model(new_model(), tmp_path / "empty")
    save_model(trained, tmp_path / "trained")
    empty = (tmp_path / "empty" / MODEL_FILE).stat().st_size
    full = (tmp_path / "trained" / MODEL_FILE).stat().st_size
    assert empty < 20_000, empty  # was 26 MB (dense 2^20 arrays) whatever it had learned
    assert full < 2_200_000, full  # 481 messages (1.89 MB, and 0.16 MB of the scored copy of the LR weights)
    assert (tmp_path / "trained" / MODEL_FILE).read_bytes()[:8] == b"MSIFTMDL"


def test_saved_and_loaded_model_learns_on_as_before(tmp_path: Path, trained: SpamModel,
                                                    mail: dict[str, list[bytes]]) -> None:
    """Everything learning needs is in the file (counts, LR weights, AdaGrad sums, rehearsal
    buffers and their random generators): the loaded model learns on exactly as the original."""
    save_model(trained, tmp_path)
    loaded = load_model(tmp_path)
    original = load_model(tmp_path)  # a copy of `trained` (the fixture is shared)
    for a in ("feature_count", "class_count", "lr_coef", "prior_counts"):
        assert np.array_equal(getattr(loaded, a), getattr(trained, a)), a
    assert np.array_equal(loaded.chars.coef, trained.chars.coef) and np.array_equal(loaded.chars.g2, trained.chars.g2)
    for y in (0, 1):
        assert len(loaded._replay[y]) == len(trained._replay[y])
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(loaded._replay[y], trained._replay[y]))
        assert all(np.array_equal(a, b) for a, b in zip(loaded.chars.replay[y], trained.chars.replay[y]))
    for i, raw in enumerate(mail["test"][100:140]):
        label = ("ham", "spam")[i % 2]
        loaded.learn(raw, label)
        original.learn(raw, label)
    loaded.refresh()
    original.refresh()
    assert np.array_equal(loaded.lr_coef, original.lr_coef) and np.array_equal(loaded.weights, original.weights)
    assert np.array_equal(loaded.chars.coef, original.chars.coef)


def test_whole_counts_are_stored_as_small_integers(tmp_path: Path, trained: SpamModel) -> None:
    """Counts of learned messages are whole numbers: stored as the smallest unsigned integers
    that hold them, read back as the same float64s. A prior's scaled counts stay float64."""
    import copy

    from mailsift.classifier import modelfile

    def stored(d: Path) -> dict[str, str]:
        data = (d / MODEL_FILE).read_bytes()
        head = modelfile.read_header(data, len(data))
        return {k: head["sections"][k]["dtype"] for k in ("ham", "spam")}

    save_model(trained, tmp_path / "whole")
    assert stored(tmp_path / "whole") == {"ham": "|u1", "spam": "|u1"}  # 240 messages a class
    loaded = load_model(tmp_path / "whole")
    assert loaded.feature_count.dtype == np.float64
    assert np.array_equal(loaded.feature_count, trained.feature_count)
    prior = copy.deepcopy(trained)
    prior.mark_prior()  # counts times prior_weight: fractions
    save_model(prior, tmp_path / "prior")
    assert stored(tmp_path / "prior") == {"ham": "<f8", "spam": "<f8"}
    assert np.array_equal(load_model(tmp_path / "prior").feature_count, prior.feature_count)


def test_old_model_is_converted_on_first_use(tmp_path: Path, trained: SpamModel,
                                             mail: dict[str, list[bytes]]) -> None:
    d = tmp_path / "model"
    save_legacy(trained, d)
    old_sidecar = (d / SIDECAR_FILE).read_bytes()
    old_pickle = (d / LEGACY_MODEL_FILE).read_bytes()
    model = load_model(d)
    # converted: the pickle is gone from the live directory, kept with its sidecar as a backup
    assert not (d / LEGACY_MODEL_FILE).exists() and (d / MODEL_FILE).exists()
    assert json.loads((d / SIDECAR_FILE).read_text())["format_version"] == 3
    assert (d / LEGACY_BACKUP / LEGACY_MODEL_FILE).read_bytes() == old_pickle
    assert (d / LEGACY_BACKUP / SIDECAR_FILE).read_bytes() == old_sidecar
    again = load_model(d)  # now read from model.bin
    for raw in mail["test"]:
        a, b, c = trained.verdict(raw), model.verdict(raw), again.verdict(raw)
        assert a.probability == b.probability == c.probability and a.label == b.label == c.label


def test_an_old_version_is_read_not_rewritten(tmp_path: Path, trained: SpamModel) -> None:
    """Model history made before format 3 holds pickles: loading one without `convert` (as a
    rollback does) leaves its directory as it was."""
    d = tmp_path / "versions" / "3-20261207T000000Z"
    save_legacy(trained, d)
    before = sorted(os.listdir(d))
    assert load_model(d, convert=False).n_spam_ == trained.n_spam_
    assert sorted(os.listdir(d)) == before


def _same_verdict(a, b) -> None:  # noqa: ANN001
    assert b.probability is not None and abs(a.probability - b.probability) <= 1e-12, (a, b)
    assert (a.score, a.label, a.unsure, a.required, a.partial, a.note) == \
        (b.score, b.label, b.unsure, b.required, b.partial, b.note)
    # the clues: the same weights; among tokens of equal weight at the cut, either may be named
    assert sorted(w for _, w in a.clues) == sorted(w for _, w in b.clues)


@pytest.mark.parametrize("kind", ["trained", "prior, sparse 4-grams"])
def test_scorer_verdicts_are_the_old_models(tmp_path: Path, trained: SpamModel, mail: dict[str, list[bytes]],
                                            kind: str) -> None:
    """The numpy-free scorer on the converted model.bin gives the verdicts the old pickled
    model gives, on a sample of the shared corpora (and odd input)."""
    from mailsift.classifier.scorer import load_scorer

    if kind == "trained":
        model = trained
    else:  # a default model's first day: counts scaled, guard on; 2^18 4-gram columns stored sparse
        model = new_model(char_bits=18)
        for h, s in zip(mail["ham"][:210], mail["spam"][:210]):
            model.learn(h, "ham")
            model.learn(s, "spam")
        model.mark_prior()
        for raw in mail["ham"][210:]:
            model.learn(raw, "ham")
    d = tmp_path / "model"
    save_legacy(model, d)
    old = load_model(d, convert=False)  # the pickle, as every mailsift before format 3 read it
    assert load_scorer(d) is None  # an old model: the scorer leaves it to load_model, which converts
    load_model(d)
    scorer = load_scorer(d)
    assert scorer is not None and (kind == "trained") == (scorer._char_keys is None)
    samples = mail["test"] + [b"", b"x", b"Subject: hi\r\n\r\n", b"\xff" * 5000, mail["spam"][3] * 40]
    for raw in samples:
        _same_verdict(old.verdict(raw), scorer.verdict(raw))
        _same_verdict(old.verdict(raw, required=7.5, max_bytes=2000, unsure_points=0.0),
                      scorer.verdict(raw, required=7.5, max_bytes=2000, unsure_points=0.0))
        assert abs(old.spamminess(raw) - scorer.spamminess(raw)) <= 1e-12
    labels = {scorer.verdict(raw).label for raw in mail["test"]}
    assert labels >= ({"spam", "ham"} if kind == "trained" else {"unsure"})


def test_scorer_imports_neither_numpy_nor_scikit_learn(tmp_path: Path, trained: SpamModel) -> None:
    import subprocess
    import sys

    save_model(trained, tmp_path)
    code = ("import sys; from mailsift.classifier.scorer import load_scorer\n"
            "v = load_scorer(sys.argv[1]).verdict(b'Subject: cheap pills\\r\\n\\r\\nbuy now')\n"
            "print(v.label, sorted(m for m in ('numpy', 'sklearn', 'scipy', 'joblib') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert r.returncode == 0, r.stderr
    label, loaded = r.stdout.split(" ", 1)
    assert label in ("spam", "ham", "unsure") and loaded.strip() == "[]", r.stdout


def test_a_learn_run_converts_an_old_model_and_keeps_it(tmp_path: Path, trained: SpamModel,
                                                          mail: dict[str, list[bytes]]) -> None:
    """A learn run holds the learn lock while it loads: the old model is converted by its save
    (no wait on its own lock), the old files kept as by a first load elsewhere."""
    import threading

    from mailsift.classifier.learn import Learner

    d = tmp_path / "model"
    save_legacy(trained, d)
    old_sidecar = (d / SIDECAR_FILE).read_bytes()
    done: list[int] = []

    def learn() -> None:
        with Learner(d, source=None) as learner:
            stats = learner.learn_many([("m", mail["test"][0])], "spam")
            learner.save()
        done.append(stats.learned)

    t = threading.Thread(target=learn, daemon=True)
    t.start()
    t.join(60)
    assert done == [1], "the learn run did not finish (waiting on its own lock?)"
    assert not (d / LEGACY_MODEL_FILE).exists()
    assert (d / LEGACY_BACKUP / SIDECAR_FILE).read_bytes() == old_sidecar
    assert (d / LEGACY_BACKUP / LEGACY_MODEL_FILE).exists()
    assert load_model(d).n_spam_ == trained.n_spam_ + 1


def test_classify_one_message_imports_no_numpy(tmp_path: Path, trained: SpamModel,
                                               mail: dict[str, list[bytes]]) -> None:
    """`mailsift classify FILE`: neither numpy, scikit-learn, the other parts' settings nor the
    other commands are imported; the line printed is the full model's verdict."""
    import subprocess
    import sys

    save_model(trained, tmp_path / "db")
    msg = tmp_path / "m.eml"
    msg.write_bytes(mail["test"][-1])
    code = ("import io, sys\nfrom mailsift.cli import main\n"
            "rc = main(['classify', '--dbpath', sys.argv[1], sys.argv[2]])\n"
            "heavy = ('numpy', 'sklearn', 'scipy', 'joblib', 'mailsift.config', 'mailsift.milter.scan',\n"
            "         'mailsift.classifier.cmd_learn', 'mailsift.serve.cmd')\n"
            "print('imported', sorted(m for m in heavy if m in sys.modules))\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "db"), str(msg)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    line, imported = r.stdout.splitlines()
    assert imported == "imported []", (r.stdout, r.stderr)
    v = trained.verdict(mail["test"][-1])
    assert line == f"{msg}\t{v.label}\t{v.probability:.6f}\t{v.score:.1f}"
    assert r.returncode == {"spam": 0, "ham": 1, "unsure": 2}[v.label]


def test_rollback_to_a_version_saved_before_format_3(tmp_path: Path, trained: SpamModel,
                                                     mail: dict[str, list[bytes]]) -> None:
    """A version kept before the format change (model.joblib) can still be rolled back to: it
    is read as it is and made live as model.bin."""
    from mailsift.classifier import versions

    d = tmp_path / "model"
    live = new_model()
    for raw in mail["ham"][:3]:
        live.learn(raw, "ham")
    live.generation = 4
    save_model(live, d)
    old = d / versions.VERSIONS_DIR / "3-20261201T000000Z"
    save_legacy(trained, old)
    versions._snapshot_record([("ab" * 32, "spam", 0.5, 1.0)], old / "learned.sqlite")
    (old / versions.VERSION_META).write_text(json.dumps({
        "source": "learn", "generation": 3, "saved_at": time.time() - 3600, "since": time.time() - 3600,
        "n_ham": trained.n_ham_, "n_spam": trained.n_spam_, "model_sha256": "x"}))
    before = sorted(os.listdir(old))
    restored, new = versions.rollback(d, "3")
    assert restored.name == old.name and new is not None
    assert sorted(os.listdir(old)) == before  # the old version is read, not rewritten
    now = load_model(d)
    assert (now.n_ham_, now.n_spam_, now.generation) == (trained.n_ham_, trained.n_spam_, 5)
    assert json.loads((d / SIDECAR_FILE).read_text())["format_version"] == 3
    assert (new.path / MODEL_FILE).exists()
    raw = mail["test"][7]
    assert now.verdict(raw).probability == trained.verdict(raw).probability
