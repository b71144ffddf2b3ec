"""The default model drops what its two corpora teach differently (prior_sources.py,
ModelSettings.prior_source_diff): `make model` counts what each corpus (its top folder) taught
while it learns them, and mark_prior drops a token one corpus calls spam and the other ham,
keeping its counts in the class totals; a token both teach alike, or one alone holds, stays."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.api import load_model, new_model
from mailsift.classifier.default_model import ensure_default_model
from mailsift.classifier.features import feature_indices
from mailsift.classifier.prior_sources import SourceCounts
from mailsift.classifier.scorer import load_scorer

N = 10  # messages per corpus and class


def _mail(n: int, subject: str, body: str) -> bytes:
    return (f"From: someone{n}@sender{n % 3}.example\r\nTo: bob@site.example\r\nSubject: {subject} {n}\r\n"
            f"Message-ID: <m{n}@sender.example>\r\nDate: Mon, {1 + n % 28} Dec 2026 10:00:00 +0000\r\n\r\n"
            f"{body} number{n}\r\n").encode()


def _corpora(root: Path) -> Path:
    """Two corpora: "blurtlist" is in every SpamAssassin ham (its mailing list) and every CSDMC
    spam; "sharedword" in every ham of both; "onlyhere" in CSDMC's ham alone."""
    bodies = {
        ("spamassassin/easy_ham", "ham"): "the meeting notes for tomorrow sharedword blurtlist",
        ("spamassassin/spam", "spam"): "cheap pills best price order now",
        ("csdmc2010/ham", "ham"): "the lunch plans for friday sharedword onlyhere",
        ("csdmc2010/spam", "spam"): "cheap pills from the blurtlist store order now",
    }
    n = 0
    for (folder, label), body in bodies.items():
        d = root / "corpora" / folder
        d.mkdir(parents=True)
        for _ in range(N):
            (d / f"{n:04d}.eml").write_bytes(_mail(n, label, body))
            n += 1
    return root / "corpora"


def _column(token: str) -> int:
    return int(feature_indices([token], 20)[0][0])


def test_source_counts_flag_only_tokens_both_sources_teach_differently() -> None:
    counts = SourceCounts(["a", "b"], 1 << 20)
    opposite, alike, lone = _column("blurtlist"), _column("sharedword"), _column("onlyhere")
    for _ in range(N):
        counts.add("a", np.array([opposite, alike]), "ham")
        counts.add("a", np.array([], dtype=np.int64), "spam")
        counts.add("b", np.array([alike, lone]), "ham")
        counts.add("b", np.array([opposite]), "spam")
    r = counts.ratios()
    assert r[0, opposite] < -2.5 and r[1, opposite] > 2.5
    assert counts.disagreeing(5.0)[[opposite, alike, lone]].tolist() == [True, False, False]
    assert not counts.disagreeing(7.0)[opposite]  # 6.1 apart: within 7
    assert not counts.disagreeing(0.0).any()  # 0: off


def test_default_model_drops_what_the_corpora_teach_differently(tmp_path: Path) -> None:
    corpora = _corpora(tmp_path)
    db = tmp_path / "models"
    assert ensure_default_model(db, corpora, out=io.StringIO()) is True
    model = load_model(db)
    assert (model.n_ham_, model.n_spam_) == (2 * N, 2 * N)
    opposite, alike, lone, spammy = (_column(t) for t in ("blurtlist", "sharedword", "onlyhere", "pills"))
    # 10 SpamAssassin ham and 10 CSDMC spam held it: without the sources it would be kept
    assert model.feature_count[:, opposite].tolist() == [0.0, 0.0]
    assert model.lr_coef[opposite] == 0.0 and model.weights[opposite] == 0.0
    for col in (alike, lone):  # taught alike, or by one corpus alone: kept, as ham
        assert model.feature_count[0, col] > 0 and model.feature_count[1, col] == 0 and model.lr_coef[col] < 0
    assert model.feature_count[1, spammy] > 0 and model.lr_coef[spammy] > 0
    # its counts stay in the class totals (prior_mass, with the rare tokens'), scaled as the prior's are
    w = model.settings.prior_weight
    assert (model.prior_mass >= [N * w, N * w]).all()
    # the numpy-free scorer, which the milter's socket and `classify` use, scores it the same
    scorer = load_scorer(db)
    assert scorer is not None
    for raw in (_mail(900, "ham", "notes blurtlist sharedword"), _mail(901, "spam", "blurtlist pills order")):
        assert scorer.verdict(raw).probability == model.verdict(raw).probability


def test_mark_prior_without_sources_or_with_the_setting_off_keeps_them() -> None:
    corpus = [(_mail(i, "ham", "notes blurtlist"), "ham", "a") for i in range(N)]
    corpus += [(_mail(100 + i, "spam", "pills blurtlist"), "spam", "b") for i in range(N)]
    corpus += [(_mail(200 + i, "ham", "notes lunch"), "ham", "b") for i in range(N)]
    corpus += [(_mail(300 + i, "spam", "pills order"), "spam", "a") for i in range(N)]
    col = _column("blurtlist")
    for diff, dropped in ((5.0, True), (0.0, False)):
        model = new_model(prior_source_diff=diff)
        counts = SourceCounts(["a", "b"], model.n_features)
        for raw, label, source in corpus:
            counts.add(source, model.features(raw)[0], label)
            model.learn(raw, label)
        totals = model.feature_count.sum(axis=1).copy()
        model.mark_prior(counts)
        assert bool(model.feature_count[:, col].sum() == 0) == dropped
        # the class totals every NB log-ratio is read against are the same either way
        assert np.allclose(model._totals, totals * model.settings.prior_weight)
    unmarked = new_model()
    for raw, label, _ in corpus:
        unmarked.learn(raw, label)
    unmarked.mark_prior()  # no sources (a prior of one corpus): nothing to compare
    assert unmarked.feature_count[:, col].sum() > 0


def test_prior_source_diff_is_validated() -> None:
    with pytest.raises(ValueError, match="prior_source_diff must not be negative"):
        new_model(prior_source_diff=-1.0)
