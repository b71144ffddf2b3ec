"""Averaged word-LR weights (ModelSettings.lr_average): scoring reads, per feature, a moving
average of the learned weight, so one contrary label (the same newsletter kept by one recipient
and junked by another) swings the score only part of the way, while learning goes on from the
learned weights (docs/classifier.md, "Long, noisy streams")."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from corpus_files import corpus_files
from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.model import ModelSettings, SpamModel
from mailsift.classifier.persist import export_state, import_state
from mailsift.classifier.scorer import load_scorer


@pytest.fixture(scope="module")
def stream(corpora: Path) -> tuple[list[tuple[bytes, str]], list[bytes]]:
    """A small labelled stream (100 ham, 100 spam, interleaved) and three SpamAssassin hard_ham
    newsletters it does not hold."""
    ham = corpus_files(corpora, "spamassassin/easy_ham", 100)
    spam = corpus_files(corpora, "spamassassin/spam_2", 100)
    return [m for pair in zip(ham, spam) for m in ((pair[0], "ham"), (pair[1], "spam"))], \
        corpus_files(corpora, "spamassassin/hard_ham", 3)


def _taught(stream: list[tuple[bytes, str]], **settings: float) -> SpamModel:
    model = new_model(**settings)
    for raw, label in stream:
        model.learn(raw, label)
    return model


def _words(model: SpamModel, raw: bytes) -> float:
    """The words' part of the message's log-odds (NB + word LR), before the bound."""
    contrib, const = model._contributions(model.features(raw)[0])  # noqa: SLF001
    return float(contrib.sum()) + const


def test_one_contrary_label_swings_the_averaged_score_less(
        stream: tuple[list[tuple[bytes, str]], list[bytes]]) -> None:
    """A newsletter taught as spam three times, then once as ham (another recipient keeps it):
    with the learned weights scored (lr_average 0) the words' part swings further towards ham
    than with the averaged ones, and the averaged model still learns: taught as ham again, the
    words' part follows. A label the model was not sure was wrong, or one taught on a default
    model's first day (marked as the prior, its guard up), moves the scored copy all the way."""
    mail, news = stream
    plain, averaged = _taught(mail, lr_average=0.0), _taught(mail)
    assert averaged.settings.lr_average == ModelSettings().lr_average > 0, "on by default"
    assert plain.lr_avg is None and plain.lr_scored() is plain.lr_coef
    for model in (plain, averaged):
        for raw in news:
            for _ in range(3):
                model.learn(raw, "spam")
    for raw in news:
        swing = {}
        for name, model in (("plain", copy.deepcopy(plain)), ("averaged", copy.deepcopy(averaged))):
            before = _words(model, raw)
            assert before > averaged.settings.lr_surprise, "the contrary label is a surprise"
            model.learn(raw, "ham")
            swing[name] = before - _words(model, raw)
            if name == "averaged":
                for _ in range(3):
                    model.learn(raw, "ham")
                assert _words(model, raw) < 0, "it learns on"
        assert 0 < swing["averaged"] < 0.8 * swing["plain"], swing
    # a message the model is unsure of moves the scored weights all the way
    fresh = new_model()
    fresh.learn(news[0], "spam")
    assert np.array_equal(fresh.lr_avg, fresh.lr_coef)
    # on a default model's first day the scored copy is the learned weights and follows them
    for model in (plain, averaged):
        for raw in news:
            model.learn(raw, "spam")
        model.mark_prior()
    assert averaged.guard() > 0 and np.array_equal(averaged.lr_avg, averaged.lr_coef)
    assert _words(averaged, news[0]) > averaged.settings.lr_surprise
    for model in (plain, averaged):
        model.learn(news[0], "ham")
    assert np.array_equal(averaged.lr_avg, averaged.lr_coef)
    assert _words(averaged, news[0]) == _words(plain, news[0])


def test_averages_are_saved_loaded_and_backed_up_exactly(
        tmp_path: Path, stream: tuple[list[tuple[bytes, str]], list[bytes]]) -> None:
    """The model file and the backup hold the averages: a loaded model scores as the saved one
    (the numpy-free scorer too, from the averaged weights) and learns on exactly as it would
    have (a backup keeps no rehearsal buffers, so only its state is compared)."""
    mail, news = stream
    model = _taught(mail)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    export_state(model, tmp_path / "b.npz", [])
    restored, _ = import_state(tmp_path / "b.npz")
    scorer = load_scorer(tmp_path / "m")
    assert scorer is not None
    for other in (loaded, restored):
        assert other.settings == model.settings
        assert np.array_equal(other.lr_avg, model.lr_avg) and np.array_equal(other.lr_coef, model.lr_coef)
    for raw in news:
        assert abs(scorer.spamminess(raw) - model.spamminess(raw)) <= 1e-12
        assert loaded.spamminess(raw) == model.spamminess(raw)
    for other in (model, loaded):
        other.learn(news[0], "ham")
    assert np.array_equal(loaded.lr_avg, model.lr_avg) and np.array_equal(loaded.lr_coef, model.lr_coef)
    assert loaded.spamminess(news[1]) == model.spamminess(news[1])


def test_a_model_from_before_averaging_scores_its_learned_weights(
        tmp_path: Path, stream: tuple[list[tuple[bytes, str]], list[bytes]]) -> None:
    """Settings that do not name lr_average (a model file or backup written before it existed)
    score the learned weights, as that model did; the numpy-free scorer reads the file's
    weights either way."""
    assert ModelSettings.from_saved({}).lr_average == 0.0
    assert ModelSettings.from_saved({"lr_average": 0.25}).lr_average == 0.25
    with pytest.raises(ValueError, match="lr_average"):
        ModelSettings(lr_average=1.5).validate()
    mail, news = stream
    model = _taught(mail[:60], lr_average=0.0)
    save_model(model, tmp_path / "old")
    loaded = load_model(tmp_path / "old")
    assert loaded.lr_avg is None
    assert all(math.isclose(loaded.spamminess(raw), model.spamminess(raw), abs_tol=1e-12) for raw in news)
