"""Figures of the TREC spam track, computed from (truth, score, judge) records.

    1-ROCA%   100 × (1 − area under the ROC curve). The area is the probability that a random
              spam scores above a random ham, ties counting one half (Mann–Whitney).
    hm%       ham misclassified: ham the filter judged spam, per 100 ham.
    sm%       spam misclassified: spam the filter did not judge spam, per 100 spam.
    lam%      logistic average misclassification: logit⁻¹((logit(hm) + logit(sm)) / 2).
    sm% at hm% ≤ 0.1
              the lowest sm% any score threshold gets while misclassifying at most 0.1% of the
              ham. A threshold cannot split messages with equal scores, so a filter that scores
              many spam and some ham exactly 1.0 gets 100 here.

How "unsure" counts: the judge is what a user sees. mailsift delivers an unsure message
without X-Spam-Flag, to the inbox, exactly like ham, so an unsure spam counts as missed
(sm%) and an unsure ham as correct. The number of unsure messages is reported beside.

Pure Python, no numpy: `mailsift evaluate` imports this on every run, and the stream sizes
here (thousands to tens of thousands) sort in milliseconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from mailsift.classifier.readiness import MIN_LEARNED, READY_FROM

SPAM = "spam"
HAM = "ham"
UNSURE = "unsure"
LABELS = (SPAM, HAM)


@dataclass(frozen=True)
class Record:
    """One classified message: its id, its true label, the filter's score and judgement."""

    id: str
    truth: str  # spam | ham
    score: float  # higher = spammier
    judge: str  # spam | ham | unsure | unknown


@dataclass(frozen=True)
class Figures:
    n_spam: int
    n_ham: int
    roca_pct: float  # 1-ROCA%
    hm_pct: float
    sm_pct: float
    lam_pct: float
    sm_at_hm01_pct: float  # sm% at hm% <= 0.1
    unsure_spam: int
    unsure_ham: int

    def lines(self) -> list[str]:
        return [
            f"messages        {self.n_spam + self.n_ham} ({self.n_spam} spam, {self.n_ham} ham)",
            f"1-ROCA%         {self.roca_pct:.4f}",
            f"hm%             {self.hm_pct:.3f}",
            f"sm%             {self.sm_pct:.3f}",
            f"lam%            {self.lam_pct:.3f}",
            f"sm% at hm%<=0.1 {self.sm_at_hm01_pct:.3f}",
            f"unsure          {self.unsure_spam} spam, {self.unsure_ham} ham (counted as ham)",
        ]


def roc_area(spam_scores: Sequence[float], ham_scores: Sequence[float]) -> float:
    """P(spam score > ham score) + ½ P(equal): the ROC area with ties handled.

    Raises ValueError when either class is empty (the area is undefined)."""
    n_s, n_h = len(spam_scores), len(ham_scores)
    if n_s == 0 or n_h == 0:
        raise ValueError("ROC area needs at least one spam and one ham")
    # Walk the merged scores in ascending order, one group of equal scores at a time.
    merged = sorted([(s, 1) for s in spam_scores] + [(h, 0) for h in ham_scores])
    ham_below = 0
    wins = 0.0  # spam-over-ham pairs, ties counting 0.5
    i = 0
    while i < len(merged):
        j = i
        g_spam = g_ham = 0
        while j < len(merged) and merged[j][0] == merged[i][0]:
            if merged[j][1]:
                g_spam += 1
            else:
                g_ham += 1
            j += 1
        wins += g_spam * ham_below + 0.5 * g_spam * g_ham
        ham_below += g_ham
        i = j
    return wins / (n_s * n_h)


def roc_points(spam_scores: Sequence[float], ham_scores: Sequence[float]) -> list[tuple[float, float]]:
    """The ROC curve as (ham misclassified fraction, spam caught fraction), one point per
    distinct threshold "spam when score >= t", from (0, 0) to (1, 1)."""
    n_s, n_h = len(spam_scores), len(ham_scores)
    if n_s == 0 or n_h == 0:
        raise ValueError("an ROC curve needs at least one spam and one ham")
    merged = sorted([(s, 1) for s in spam_scores] + [(h, 0) for h in ham_scores], reverse=True)
    points = [(0.0, 0.0)]
    tp = fp = 0
    i = 0
    while i < len(merged):
        j = i
        while j < len(merged) and merged[j][0] == merged[i][0]:
            if merged[j][1]:
                tp += 1
            else:
                fp += 1
            j += 1
        points.append((fp / n_h, tp / n_s))
        i = j
    return points


def sm_at_hm(spam_scores: Sequence[float], ham_scores: Sequence[float], hm_limit_pct: float = 0.1) -> float:
    """The lowest sm% over thresholds whose hm% is at most `hm_limit_pct`."""
    best_tpr = 0.0
    for fpr, tpr in roc_points(spam_scores, ham_scores):
        if fpr * 100.0 <= hm_limit_pct + 1e-12:
            best_tpr = max(best_tpr, tpr)
    return 100.0 * (1.0 - best_tpr)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _rate_for_logit(errors: int, n: int) -> float:
    """errors/n, moved off 0 and 1 by half a message so its logit is finite."""
    if errors == 0 or errors == n:
        return (errors + 0.5) / (n + 1.0)
    return errors / n


def lam(ham_errors: int, n_ham: int, spam_errors: int, n_spam: int) -> float:
    """Logistic average misclassification, as a fraction (TREC's lam% / 100).

    A rate of exactly 0 or 1 has no logit; it is replaced by (errors + 0.5) / (n + 1)."""
    if n_ham == 0 or n_spam == 0:
        raise ValueError("lam needs at least one spam and one ham")
    x = (_logit(_rate_for_logit(ham_errors, n_ham)) + _logit(_rate_for_logit(spam_errors, n_spam))) / 2.0
    return 1.0 / (1.0 + math.exp(-x))


def figures(records: Iterable[Record]) -> Figures:
    """All figures for a run. Raises ValueError unless both classes occur."""
    spam_scores: list[float] = []
    ham_scores: list[float] = []
    hm = sm = unsure_spam = unsure_ham = 0
    for r in records:
        if r.truth == SPAM:
            spam_scores.append(r.score)
            if r.judge != SPAM:
                sm += 1
            if r.judge == UNSURE:
                unsure_spam += 1
        elif r.truth == HAM:
            ham_scores.append(r.score)
            if r.judge == SPAM:
                hm += 1
            if r.judge == UNSURE:
                unsure_ham += 1
        else:
            raise ValueError(f"record {r.id}: truth must be spam or ham, not {r.truth!r}")
    n_s, n_h = len(spam_scores), len(ham_scores)
    if n_s == 0 or n_h == 0:
        raise ValueError(f"figures need both spam and ham (got {n_s} spam, {n_h} ham)")
    return Figures(
        n_spam=n_s,
        n_ham=n_h,
        roca_pct=100.0 * (1.0 - roc_area(spam_scores, ham_scores)),
        hm_pct=100.0 * hm / n_h,
        sm_pct=100.0 * sm / n_s,
        lam_pct=100.0 * lam(hm, n_h, sm, n_s),
        sm_at_hm01_pct=sm_at_hm(spam_scores, ham_scores, 0.1),
        unsure_spam=unsure_spam,
        unsure_ham=unsure_ham,
    )


@dataclass(frozen=True)
class Window:
    """What users saw over a stretch of the stream (messages start..end, 1-based)."""

    start: int
    end: int
    n_spam: int
    n_ham: int
    ham_to_junk: int  # ham judged spam: filed to Junk
    spam_to_inbox: int  # spam judged ham or unsure: left in the inbox
    unsure: int  # either class

    @staticmethod
    def pct(part: int, whole: int) -> str:
        return f"{100.0 * part / whole:6.2f}" if whole else "     -"

    def line(self, label: str | None = None) -> str:
        n = self.n_spam + self.n_ham
        head = f"{self.start:>7}-{self.end:<7}" if label is None else f"{label:<15}"
        return (f"{head} {self.n_ham:>6} {self.n_spam:>6}  "
                f"{self.pct(self.ham_to_junk, self.n_ham)}  {self.pct(self.spam_to_inbox, self.n_spam)}  "
                f"{self.pct(self.unsure, n)}")


WINDOW_HEADER = "messages          ham   spam  ham>Junk% spam>INBOX% unsure%"


def windows(records: Sequence[Record], size: int = 2500) -> list[Window]:
    """Per window of `size` messages, then one for the whole stream (the last entry)."""
    def tally(start: int, recs: Sequence[Record]) -> Window:
        n_spam = sum(r.truth == SPAM for r in recs)
        return Window(
            start + 1, start + len(recs), n_spam, len(recs) - n_spam,
            sum(r.truth == HAM and r.judge == SPAM for r in recs),
            sum(r.truth == SPAM and r.judge != SPAM for r in recs),
            sum(r.judge == UNSURE for r in recs),
        )

    out = [tally(i, records[i:i + size]) for i in range(0, len(records), size)]
    out.append(tally(0, records))
    return out


def decides_from(records: Sequence[Record]) -> int | None:
    """The position (1-based) of the first message judged spam or ham, None if none was.

    An empty mailsift model judges every message `unsure` until it has learned READY_FROM ham
    and READY_FROM spam (readiness.py) and only near the threshold after, so this is where it
    starts deciding: what a new site sees from there is the row `from N-END` of window_lines."""
    return next((i for i, r in enumerate(records, 1) if r.judge in LABELS), None)


def window_lines(records: Sequence[Record], size: int = 2500) -> list[str]:
    """The windows; when the filter decided nothing at first (an empty model learning), the
    stream from the first message it decided (`from N-END`); the whole stream (`all`), last."""
    ws = windows(records, size)
    lines = [WINDOW_HEADER] + [w.line() for w in ws[:-1]]
    first = decides_from(records)
    if first is not None and first > 1:
        w = windows(records[first - 1:], len(records))[-1]
        lines.append(w.line(f"from {first}-{len(records)}"))
    lines.append("all " + ws[-1].line()[4:])
    return lines


def decides_line(records: Sequence[Record]) -> str:
    """`decides from` for the report: where the filter stopped being unsure for want of training."""
    first = decides_from(records)
    if first is None:
        return (f"decides from    never: every message unsure (the model learned fewer than {READY_FROM} ham "
                f"or {READY_FROM} spam)")
    if first == 1:
        return "decides from    message 1"
    return (f"decides from    message {first} (the first judged spam or ham: an empty model is unsure until "
            f"it has learned {READY_FROM} ham and {READY_FROM} spam, cautious until {MIN_LEARNED} of each)")
