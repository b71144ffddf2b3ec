"""Self-training (issue 12: ModelSettings.self_train*): what a pseudo-label teaches and what it
must not touch, its bounds, that they survive a save, and where `evaluate --online` learns
pseudo-labels (before each message taught, as the store's feedback learner does, never the
taught message itself)."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.corpus import Entry
from mailsift.classifier.evaluate import Feedback, run_feedback
from mailsift.classifier.persist import export_state, import_state
from mailsift.verdict import Verdict

ON = {"self_train": 0.01, "self_train_spam": 1e-4, "self_train_balance": 0, "self_train_per_label": 0}  # unbounded


def _files(corpora: Path, folder: str, n: int, skip: int = 0) -> list[bytes]:
    return [p.read_bytes() for p in sorted((corpora / folder).iterdir())[skip:skip + n] if p.is_file()]


@pytest.fixture(scope="module")
def prior(corpora: Path):  # noqa: ANN201
    """A default-style model: 210 ham and 210 spam of the corpora, marked as the prior."""
    model = new_model()
    for h, s in zip(_files(corpora, "spamassassin/easy_ham", 210), _files(corpora, "spamassassin/spam_2", 210)):
        model.learn(h, "ham")
        model.learn(s, "spam")
    model.mark_prior()
    return model


def _with(model, **settings):  # noqa: ANN001, ANN202
    m = copy.deepcopy(model)
    m.settings = replace(m.settings, **settings)
    m.refresh()
    return m


def _sure_ham(model, corpora: Path) -> list[bytes]:  # noqa: ANN001
    out = [h for h in _files(corpora, "spamassassin/easy_ham_2", 40) if model.spamminess(h) <= 0.01]
    assert len(out) >= 5, "too few unseen ham the prior is sure of"
    return out


def test_off_and_until_the_model_decides(prior, corpora: Path) -> None:  # noqa: ANN001
    ham = _sure_ham(prior, corpora)[0]
    assert new_model().self_trains()  # on by default
    m = _with(prior, self_train=0.0, self_train_spam=0.0)
    assert not m.self_trains() and m.self_learn(ham, m.spamminess(ham)) is None
    assert m.chars.learned == 0 and m.chars.pseudo == [0, 0]
    for bad in ({"self_train": 0.5}, {"self_train_spam": -0.1}, {"self_train_per_label": -1}):
        with pytest.raises(ValueError):
            new_model(**bad)
    empty = new_model(**ON)  # an empty model's confidence means nothing: it never self-trains
    assert empty.self_trains() and empty.self_learn(ham, 0.0) is None and empty.chars.learned == 0


def test_a_pseudo_label_teaches_the_char_member_only(prior, corpora: Path) -> None:  # noqa: ANN001
    m = _with(prior, **ON)
    ham = _sure_ham(m, corpora)
    counts, cc, lr = m.feature_count.copy(), m.class_count.copy(), m.lr_coef.copy()
    guard, local = m.guard(), m.local_learned()
    assert m.self_learn(ham[0], m.spamminess(ham[0])) == "ham"
    assert m.chars.learned == 1 and m.chars.pseudo == [1, 0] and m.chars.coef.any()
    # not taught: NB counts, class counts, word LR, the guard and readiness are the real labels'
    assert np.array_equal(m.feature_count, counts) and np.array_equal(m.class_count, cc)
    assert np.array_equal(m.lr_coef, lr) and m.guard() == guard and m.local_learned() == local
    # only what it is sure of: ham at p <= 0.01, spam at p >= 1 - 1e-4, nothing between
    assert m.self_train_label(0.02) is None and m.self_train_label(0.999) is None
    assert m.self_train_label(0.01) == "ham" and m.self_train_label(1 - 1e-5) == "spam"
    assert m.self_learn(ham[1], 0.5) is None and m.chars.learned == 1
    # self_train_words: the word LR too, its step scaled, still no counts
    w = _with(prior, self_train_words=0.25, **ON)
    assert w.self_learn(ham[0], w.spamminess(ham[0])) == "ham"
    idx, _ = w.features(ham[0])
    assert (w.lr_coef[idx] < prior.lr_coef[idx]).all() and np.array_equal(w.feature_count, prior.feature_count)


def test_pseudo_labels_are_bounded(prior, corpora: Path) -> None:  # noqa: ANN001
    ham = _sure_ham(prior, corpora)
    spam = _files(corpora, "spamassassin/spam", 5)
    m = _with(prior, **{**ON, "self_train_balance": 2})
    assert [m.self_learn(h, 0.0) for h in ham[:3]] == ["ham", "ham", None]  # ham may lead spam by 2
    assert m.self_learn(spam[0], 1.0) == "spam" and m.self_learn(ham[3], 0.0) == "ham"
    assert m.chars.pseudo == [3, 1]
    # at most self_train_per_label per message the site taught: none without feedback
    m = _with(prior, **{**ON, "self_train_per_label": 2})
    assert m.self_learn(ham[0], 0.0) is None and m.chars.pseudo == [0, 0]
    m.learn(spam[1], "spam")  # a correction
    assert [m.self_learn(h, 0.0) for h in ham[:3]] == ["ham", "ham", None]


def test_pseudo_counts_survive_save_and_backup(prior, corpora: Path, tmp_path: Path) -> None:  # noqa: ANN001
    m = _with(prior, **{**ON, "self_train_balance": 5})
    ham = _sure_ham(m, corpora)
    for h in ham[:3]:
        m.self_learn(h, 0.0)
    save_model(m, tmp_path / "db")
    loaded = load_model(tmp_path / "db")
    assert loaded.chars.pseudo == [3, 0] and loaded.settings.self_train_balance == 5
    assert loaded.spamminess(ham[4]) == pytest.approx(m.spamminess(ham[4]), rel=1e-6)
    export_state(m, tmp_path / "b.npz", [])
    back, _ = import_state(tmp_path / "b.npz")
    assert back.chars.pseudo == [3, 0]
    back.settings = replace(back.settings, self_train_balance=5)
    assert [back.self_learn(h, 0.0) for h in ham[3:6]] == ["ham", "ham", None]  # the bound carries on


class SelfTraining:
    """Judges each message as its file says (`judge=spam|ham`) and records, in order, what it is
    taught (label) and what it self-learns (`self`)."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str]] = []

    def _judge(self, raw: bytes) -> str:
        return re.search(rb"judge=(\w+)", raw).group(1).decode()  # type: ignore[union-attr]

    def _id(self, raw: bytes) -> str:
        return re.search(rb"id=(\d+)", raw).group(1).decode()  # type: ignore[union-attr]

    def spamminess(self, raw: bytes) -> float:
        return 0.999 if self._judge(raw) == "spam" else 0.001

    def verdict(self, raw: bytes, required: float = 5.0) -> Verdict:
        spam = self._judge(raw) == "spam"
        return Verdict(self.spamminess(raw), 9.0 if spam else -2.0, required)

    def learn(self, raw: bytes, label: str) -> None:
        self.log.append((self._id(raw), label))

    def self_trains(self) -> bool:
        return True

    def self_learn(self, raw: bytes, p: float) -> str | None:
        self.log.append((self._id(raw), "self"))
        return None


# (truth, what the model judges): messages 2 and 5 are misfiled
STREAM = [("ham", "ham"), ("ham", "ham"), ("spam", "ham"), ("ham", "ham"), ("spam", "spam"),
          ("ham", "spam"), ("ham", "ham")]


def _stream(tmp_path: Path) -> list[Entry]:
    out = []
    for i, (truth, judge) in enumerate(STREAM):
        p = tmp_path / f"m{i}.eml"
        p.write_bytes(f"Subject: id={i} judge={judge}\n\nbody {i}\n".encode())
        out.append(Entry(truth, p))
    return out


def test_evaluate_self_trains_where_the_feedback_learner_would(tmp_path: Path) -> None:
    # errors: the deliveries since the last correction, then the correction; never the
    # corrected message itself, and nothing after the last correction
    m = SelfTraining()
    run_feedback(_stream(tmp_path), m, Feedback("errors"))
    assert m.log == [("0", "self"), ("1", "self"), ("2", "spam"), ("3", "self"), ("4", "self"), ("5", "ham")]
    # none: no batch is ever learned, so nothing is self-learned
    m = SelfTraining()
    run_feedback(_stream(tmp_path), m, Feedback("none"))
    assert m.log == []
    # full: every message has its real label at once: nothing is pseudo-labelled
    m = SelfTraining()
    run_feedback(_stream(tmp_path), m, Feedback("full"))
    assert [x for x in m.log if x[1] == "self"] == []
    # self_train_every 3: also every 3 messages without waiting for a correction
    m = SelfTraining()
    run_feedback(_stream(tmp_path), m, Feedback("none"), self_train_every=3)
    assert m.log == [("0", "self"), ("1", "self"), ("2", "self"), ("3", "self"), ("4", "self"), ("5", "self")]


def test_evaluate_with_a_real_model_learns_pseudo_labels(prior, corpora: Path, tmp_path: Path) -> None:  # noqa: ANN001
    """A default-style model, `errors` feedback, over a small stream of unseen corpus mail."""
    ham = _files(corpora, "spamassassin/easy_ham_2", 30, skip=40)
    spam = _files(corpora, "spamassassin/spam", 10, skip=5)
    entries = []
    for i, (label, raw) in enumerate([("ham", h) for h in ham] + [("spam", s) for s in spam]):
        f = tmp_path / f"{i:03d}.eml"
        f.write_bytes(raw)
        entries.append(Entry(label, f))
    entries = [e for pair in zip(entries[:10], entries[30:]) for e in pair] + entries[10:30]
    m = _with(prior, **ON)
    before = m.class_count.copy()
    records = run_feedback(entries, m, Feedback("errors"))
    assert len(records) == 40
    taught = int(round((m.class_count - before).sum()))
    assert taught >= 1, "no message of the stream was misfiled: the stream tests nothing"
    assert sum(m.chars.pseudo) >= 1 and m.chars.learned == taught + sum(m.chars.pseudo)
    assert m.local_learned() == taught  # pseudo-labels are not teaching
