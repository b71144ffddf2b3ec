"""From a message's probability to its Verdict: readiness, its guard and the unsure band, one
place for the full model (model.py) and the numpy-free scorer (scorer.py)."""

from __future__ import annotations

from mailsift.classifier.points import probability_to_score
from mailsift.classifier.readiness import Readiness
from mailsift.verdict import Verdict


def judge(p: float, clues: tuple[tuple[str, float], ...], required: float, *, partial: bool, band: float,
          readiness: Readiness) -> Verdict:
    """The Verdict for probability `p` at the site's `required`. The model's `readiness`
    (readiness.assess) may raise the threshold (a default model's first day, an empty model
    still learning) and says why in the Verdict's note; `band` points either side of the
    threshold are unsure, and everything is unsure until the model is ready."""
    score = round(probability_to_score(p), 3)
    required += readiness.guard
    unsure = not readiness.ready or abs(score - required) < band
    return Verdict(p, score, required, unsure, clues, partial=partial, note=readiness.note)
