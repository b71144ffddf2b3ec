"""The prior keeps only what the corpora taught in several messages (ModelSettings.prior_min_df):
mark_prior drops a token the corpora held in fewer messages from the NB counts, the word LR and
the rehearsal buffers, keeps its counts in the class totals (every other token scores as before),
and the saved model scores the same through the numpy-free scorer and a backup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.features import feature_indices
from mailsift.classifier.model import SpamModel
from mailsift.classifier.persist import export_state, import_state
from mailsift.classifier.scorer import load_scorer
from mailsift.classifier.tokenize import tokenize


def _mail(subject: str, body: str) -> bytes:
    return (f"From: someone@sender.example\r\nTo: bob@site.example\r\nSubject: {subject}\r\n"
            f"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n{body}\r\n").encode()


# A small labelled stream: every message shares its class's words; one spam alone says
# "quuxvendor" (a rare token: a word of one corpus message), two ham say "zorblatt".
HAM = [_mail(f"minutes {i}", "the meeting notes for tomorrow, agenda attached" + (" zorblatt" if i < 2 else ""))
       for i in range(8)]
SPAM = [_mail(f"offer {i}", "cheap pills best price order now" + (" quuxvendor" if i == 0 else ""))
        for i in range(8)]


def _column(token: str) -> int:
    return int(feature_indices([token], 20)[0][0])


def _prior(**settings: object) -> SpamModel:
    model = new_model(**settings)
    for h, s in zip(HAM, SPAM):
        model.learn(h, "ham")
        model.learn(s, "spam")
    return model


def test_mark_prior_drops_tokens_of_fewer_than_min_df_messages() -> None:
    model = _prior()
    assert model.settings.prior_min_df == 3
    rare, twice, common = _column("quuxvendor"), _column("zorblatt"), _column("pills")
    assert model.feature_count[1, rare] == 1 and model.lr_coef[rare] > 0  # learned before marking
    assert model.feature_count[0, twice] == 2 and model.lr_coef[twice] < 0
    model.mark_prior()
    for col in (rare, twice):  # in 1 and 2 messages: gone from counts, LR and rehearsal
        assert model.feature_count[:, col].tolist() == [0.0, 0.0] and model.lr_coef[col] == 0.0
        assert model.weights[col] == 0.0
        assert not any(col in stored for own in model._replay for stored in own)
    assert model.feature_count[1, common] == 8 * model.settings.prior_weight and model.lr_coef[common] > 0
    assert any(common in stored for stored in model._replay[1])
    # the tokenizer still reads the token (the site may teach it); the prior gives it no weight
    with_rare = _mail("hello", "a note quuxvendor")
    idx, _ = model.features(with_rare)
    assert "quuxvendor" in tokenize(with_rare)
    contrib, _ = model._contributions(idx)
    assert contrib[list(idx).index(rare)] == 0.0


def test_prior_min_df_off_keeps_every_token() -> None:
    for off in (0, 1):
        model = _prior(prior_min_df=off)
        model.mark_prior()
        rare = _column("quuxvendor")
        assert model.feature_count[1, rare] > 0 and model.lr_coef[rare] > 0 and model.weights[rare] > 0


def test_a_dropped_token_is_learned_again_from_the_site(tmp_path: Path) -> None:
    model = _prior()
    model.mark_prior()
    rare = _column("quuxvendor")
    model.learn(_mail("offer 9", "quuxvendor again"), "spam")  # the site teaches it
    assert model.feature_count[1, rare] == 1 and model.lr_coef[rare] > 0
    # saved and scored by both routes: the same verdict as the model in memory
    save_model(model, tmp_path / "m")
    loaded, scorer = load_model(tmp_path / "m"), load_scorer(tmp_path / "m")
    assert scorer is not None
    for raw in HAM[:3] + SPAM[:3] + [_mail("hello", "a note quuxvendor")]:
        a, b, c = model.verdict(raw), loaded.verdict(raw), scorer.verdict(raw)
        assert a.probability == b.probability and a.label == b.label
        assert abs(a.probability - c.probability) < 1e-9 and a.label == c.label


def test_prior_min_df_is_validated() -> None:
    with pytest.raises(ValueError, match="prior_min_df must not be negative"):
        new_model(prior_min_df=-1)
    with pytest.raises(ValueError, match="prior_nb_clip and prior_pseudo must not be negative"):
        new_model(prior_pseudo=-1.0)


def _ratio(model: SpamModel, token: str) -> float:
    col, a = _column(token), model.settings.alpha
    return float(np.log(model.feature_count[1, col] + a) - np.log(model.feature_count[0, col] + a))


def test_prior_nb_clip_bounds_the_priors_log_ratios_both_ways() -> None:
    plain, clipped = _prior(), _prior(prior_nb_clip=2.0)
    plain.mark_prior()
    clipped.mark_prior()
    assert _ratio(plain, "pills") > 4 and _ratio(plain, "agenda") < -4  # 8 of one class, none of the other
    assert abs(_ratio(clipped, "pills") - 2.0) < 1e-9 and abs(_ratio(clipped, "agenda") + 2.0) < 1e-9
    assert clipped.feature_count[1, _column("pills")] == plain.feature_count[1, _column("pills")]  # raised, not cut
    col = _column("pills")
    assert clipped.weights[col] < plain.weights[col]
    # what the site teaches afterwards is not clipped at 2: only nb_clip bounds it
    for raw in SPAM[:5]:
        clipped.learn(raw, "spam")
    assert _ratio(clipped, "pills") > 2.0


def test_prior_pseudo_adds_messages_to_both_classes_of_the_priors_tokens() -> None:
    plain, soft = _prior(), _prior(prior_pseudo=1.0)
    plain.mark_prior()
    soft.mark_prior()
    w, col = soft.settings.prior_weight, _column("pills")
    assert np.allclose(soft.feature_count[:, col], plain.feature_count[:, col] + w)
    assert 0 < _ratio(soft, "pills") < _ratio(plain, "pills")
    never = _column("neverseenword")
    assert soft.feature_count[:, never].tolist() == [0.0, 0.0]  # only the corpora's tokens
    assert soft.feature_count[:, _column("quuxvendor")].tolist() == [0.0, 0.0]  # dropped first (prior_min_df)


def test_the_tokens_kept_score_as_before_and_the_totals_hold_the_dropped_ones(tmp_path: Path) -> None:
    pruned, whole = _prior(), _prior(prior_min_df=0)
    w, fc = pruned.settings.prior_weight, pruned.feature_count
    totals = fc.sum(axis=1) * w
    rare = fc[:, (fc[0] + fc[1]) < 3].sum(axis=1) * w  # zorblatt and its bigram twice in ham, quuxvendor's once in spam
    assert rare.tolist() == [4 * w, 2 * w]
    pruned.mark_prior()
    whole.mark_prior()
    assert np.allclose(pruned.prior_mass, rare) and whole.prior_mass.tolist() == [0.0, 0.0]
    assert np.allclose(pruned._totals, totals) and np.allclose(whole._totals, totals)
    raw = _mail("offer", "cheap pills and the agenda quuxvendor zorblatt")
    idx, _ = pruned.features(raw)
    a, const_a = pruned._contributions(idx)
    b, const_b = whole._contributions(idx)
    assert const_a == const_b  # the NB constant an unseen token adds is the one before
    dropped = np.isin(idx, [_column("quuxvendor"), _column("zorblatt")])
    assert dropped.sum() == 2 and (a[dropped] == 0).all() and (b[dropped] != 0).all()
    assert np.array_equal(a[~dropped], b[~dropped])
    # the totals survive a save (and the scorer reads them) and a backup
    save_model(pruned, tmp_path / "m")
    loaded, scorer = load_model(tmp_path / "m"), load_scorer(tmp_path / "m")
    assert np.array_equal(loaded.prior_mass, pruned.prior_mass)
    assert loaded.verdict(raw).probability == pruned.verdict(raw).probability
    assert abs(scorer.verdict(raw).probability - pruned.verdict(raw).probability) < 1e-9
    export_state(pruned, tmp_path / "backup.npz", [])
    restored, _ = import_state(tmp_path / "backup.npz")
    assert np.array_equal(restored.prior_mass, pruned.prior_mass)
    assert restored.verdict(raw).probability == pytest.approx(pruned.verdict(raw).probability, rel=1e-6)
