"""Settings measured for long, noisy streams (issue 12; docs/classifier.md), on real mail from
the shared corpora: the bound on the model's certainty (z_bound: each part of the fused
log-odds, the words' and the characters', bounded softly, in the model and in the numpy-free
scorer alike; on by default, test_long_streams.py) and the character member's rehearsal
(char_replay)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from corpus_files import corpus_files
from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.model import SpamModel
from mailsift.classifier.points import Z_BOUND, sigmoid


@pytest.fixture(scope="module")
def mail(corpora: Path) -> dict[str, list[bytes]]:
    return {
        "ham": corpus_files(corpora, "spamassassin/easy_ham", 220),
        "spam": corpus_files(corpora, "spamassassin/spam_2", 220),
        "test": corpus_files(corpora, "spamassassin/easy_ham_2", 60) + corpus_files(corpora, "spamassassin/spam", 60),
    }


def _trained(mail: dict[str, list[bytes]], **settings: float) -> SpamModel:
    model = new_model(**settings)
    for h, s in zip(mail["ham"], mail["spam"]):
        model.learn(h, "ham")
        model.learn(s, "spam")
    return model


def _parts(model: SpamModel, raw: bytes) -> tuple[float, float]:
    idx, _ = model.features(raw)
    contrib, const = model._contributions(idx)
    return float(contrib.sum()) + const, model._char_z(raw)


def _knee_tanh(z: float, bound: float) -> float:
    """z up to three quarters of the bound, then a tanh the rest of the way to it."""
    k = 0.75 * bound
    return z if abs(z) <= k else math.copysign(k + (bound - k) * math.tanh((abs(z) - k) / (bound - k)), z)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_each_part_is_bounded_so_no_message_is_beyond_doubt(mail: dict[str, list[bytes]]) -> None:
    assert Z_BOUND == 0.0  # what a model file without the setting scores with: unbounded
    model = _trained(mail, z_bound=16.0, sender_weight=0.0)  # the two parts alone, no sender history
    unbounded = SpamModel(model.settings)
    unbounded.__dict__.update({k: v for k, v in model.__dict__.items() if k != "settings"})
    unbounded.settings = model.with_settings(z_bound=0.0)
    far = 0
    for raw in mail["test"]:
        words, chars = _parts(model, raw)
        p = model.spamminess(raw)
        assert p == sigmoid(_knee_tanh(words, 16.0) + _knee_tanh(chars, 16.0))
        assert unbounded.spamminess(raw) == sigmoid(words + chars)
        assert abs(_logit(min(max(p, 1e-15), 1 - 1e-15))) < 32.0
        if abs(words) > 16.0 or abs(chars) > 16.0:  # sure beyond doubt: the bound takes it back
            far += 1
            assert abs(_logit(p)) < abs(words + chars) - 1.0
        # the verdict's probability is the same bounded one
        assert model.verdict(raw).probability == p
    assert far > 0, "no test message had a part beyond the bound: the test proves nothing"


def test_the_scorer_applies_the_models_bound(tmp_path: Path, mail: dict[str, list[bytes]]) -> None:
    from mailsift.classifier.scorer import load_scorer

    for bound in (8.0, 16.0):
        model = _trained(mail, z_bound=bound)
        d = tmp_path / f"b{bound:g}"
        save_model(model, d)
        scorer = load_scorer(d)
        assert scorer is not None and scorer.z_bound == bound
        assert load_model(d).settings.z_bound == bound
        for raw in mail["test"]:
            assert abs(model.spamminess(raw) - scorer.spamminess(raw)) <= 1e-12
            assert scorer.verdict(raw).label == model.verdict(raw).label


@pytest.mark.parametrize("bad", [0.5, -1.0, 101.0])
def test_a_bound_outside_its_range_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="z_bound"):
        new_model(z_bound=bad)


def test_the_character_members_rehearsal_keeps_what_char_replay_says(tmp_path: Path,
                                                                       mail: dict[str, list[bytes]]) -> None:
    """ModelSettings.char_replay (measured at 1000, not kept: docs/classifier.md): the recent
    messages per class the character member rehearses, kept across a save and a load."""
    assert new_model().chars.replay_size == 300
    model = new_model(char_replay=7)
    for h, s in zip(mail["ham"][:20], mail["spam"][:20]):
        model.learn(h, "ham")
        model.learn(s, "spam")
    assert [len(x) for x in model.chars.replay] == [7, 7]
    last = model.char_features(mail["spam"][19])
    assert any(np.array_equal(last, kept) for kept in model.chars.replay[1])  # the newest is kept
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.settings.char_replay == 7 and loaded.chars.replay_size == 7
    assert [len(x) for x in loaded.chars.replay] == [7, 7]
    loaded.learn(mail["ham"][30], "ham")
    assert [len(x) for x in loaded.chars.replay] == [7, 7]
    none = new_model(char_replay=0)  # no rehearsal at all
    for h, s in zip(mail["ham"][:3], mail["spam"][:3]):
        none.learn(h, "ham")
        none.learn(s, "spam")
    assert none.chars.replay == ([], []) and none.chars.learned == 6
    for bad in (-1, 10001):
        with pytest.raises(ValueError, match="char_replay"):
            new_model(char_replay=bad)
