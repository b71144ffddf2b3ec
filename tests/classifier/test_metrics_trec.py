"""TREC figures on small cases computed by hand."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsift.classifier.metrics import Record, figures, lam, roc_area, roc_points, sm_at_hm


def recs(spam: list[float], ham: list[float], judge_spam: str = "spam", judge_ham: str = "ham") -> list[Record]:
    out = [Record(f"s{i}", "spam", s, judge_spam) for i, s in enumerate(spam)]
    out += [Record(f"h{i}", "ham", h, judge_ham) for i, h in enumerate(ham)]
    return out


def test_all_correct_area_is_one() -> None:
    assert roc_area([0.9, 0.8], [0.1, 0.2]) == 1.0
    f = figures(recs([0.9, 0.8], [0.1, 0.2]))
    assert f.roca_pct == 0.0
    assert f.hm_pct == 0.0 and f.sm_pct == 0.0
    assert f.sm_at_hm01_pct == 0.0


def test_all_wrong_area_is_zero() -> None:
    assert roc_area([0.1, 0.2], [0.8, 0.9]) == 0.0
    f = figures(recs([0.1, 0.2], [0.8, 0.9], judge_spam="ham", judge_ham="spam"))
    assert f.roca_pct == 100.0
    assert f.hm_pct == 100.0 and f.sm_pct == 100.0
    assert f.sm_at_hm01_pct == 100.0


def test_ties_count_one_half() -> None:
    # pairs: (.5,.5) tie 0.5; (.5,.1) 1; (.9,.5) 1; (.9,.1) 1  -> 3.5 / 4
    assert roc_area([0.5, 0.9], [0.5, 0.1]) == pytest.approx(0.875)
    # (.3,.7) 0; (.3,.2) 1; twice (.7,.7) 0.5 and (.7,.2) 1  -> 4 / 6
    assert roc_area([0.3, 0.7, 0.7], [0.7, 0.2]) == pytest.approx(4 / 6)
    assert roc_area([1.0] * 5, [1.0] * 3) == 0.5


def test_empty_class_is_an_error() -> None:
    with pytest.raises(ValueError):
        roc_area([], [0.1])
    with pytest.raises(ValueError, match="both spam and ham"):
        figures(recs([0.5], []))


def test_roc_points_one_per_distinct_threshold() -> None:
    pts = roc_points([0.9, 0.5], [0.5, 0.1])
    # thresholds >=0.9: (0, .5); >=0.5: (.5, 1); >=0.1: (1, 1)
    assert pts == [(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]


def test_sm_at_hm_cannot_split_ties() -> None:
    # Two of 1000 ham score exactly 1.0 with 10 spam: no threshold keeps hm% <= 0.1 and
    # catches anything, so sm% is 100 (bogofilter's failure mode on the shared corpora).
    ham = [0.1] * 998 + [1.0] * 2
    spam = [1.0] * 10 + [0.95] * 90
    assert sm_at_hm(spam, ham, 0.1) == 100.0
    # One such ham is 0.1% of the ham: allowed, and the 0.95 threshold catches every spam.
    ham = [0.1] * 999 + [1.0]
    assert sm_at_hm(spam, ham, 0.1) == 0.0
    # With the 0.95 spam tied with a ham at 0.1, only the 10 spam at 1.0 are caught.
    assert sm_at_hm([1.0] * 10 + [0.1] * 90, ham, 0.1) == pytest.approx(90.0)


def test_lam_hand_computed() -> None:
    assert 100 * lam(1, 100, 1, 100) == pytest.approx(1.0)
    # odds sqrt(0.04/0.96 * 0.01/0.99) = 0.020515 -> 2.0103%
    assert 100 * lam(4, 100, 1, 100) == pytest.approx(2.01028, abs=1e-4)
    assert lam(4, 100, 1, 100) == pytest.approx(lam(1, 100, 4, 100))
    # no errors: each rate becomes 0.5 / (n + 1)
    assert 100 * lam(0, 100, 0, 100) == pytest.approx(100 * 0.5 / 101)
    assert 100 * lam(100, 100, 100, 100) == pytest.approx(100 * 100.5 / 101)


def test_unsure_counts_as_delivered_to_the_inbox() -> None:
    r = recs([0.9, 0.6], [0.1, 0.55])
    r = [Record(x.id, x.truth, x.score, "unsure" if x.score in (0.6, 0.55) else x.judge) for x in r]
    f = figures(r)
    assert f.sm_pct == 50.0  # the unsure spam was missed
    assert f.hm_pct == 0.0  # the unsure ham reached the inbox
    assert (f.unsure_spam, f.unsure_ham) == (1, 1)
    assert f.roca_pct == 0.0  # ranking is unaffected by the judge


def test_figures_lines_name_every_figure() -> None:
    text = "\n".join(figures(recs([0.9], [0.1])).lines())
    for name in ("1-ROCA%", "hm%", "sm%", "lam%", "sm% at hm%<=0.1", "unsure"):
        assert name in text


def brute_area(spam: list[float], ham: list[float]) -> float:
    total = 0.0
    for s, h in itertools.product(spam, ham):
        total += 1.0 if s > h else 0.5 if s == h else 0.0
    return total / (len(spam) * len(ham))


scores = st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.5000001, 0.9, 1.0]), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(spam=scores, ham=scores)
def test_area_matches_pairwise_count(spam: list[float], ham: list[float]) -> None:
    assert roc_area(spam, ham) == pytest.approx(brute_area(spam, ham))
    pts = roc_points(spam, ham)
    # the trapezoid area under the ROC points is the same area (ties are diagonal segments)
    trap = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    assert trap == pytest.approx(brute_area(spam, ham))
