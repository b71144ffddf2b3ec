"""From a message's probability to its Verdict: the first-day guard and the unsure band, one
place for the full model (model.py) and the numpy-free scorer (scorer.py)."""

from __future__ import annotations

from mailsift.classifier.points import probability_to_score
from mailsift.verdict import Verdict


def judge(p: float, clues: tuple[tuple[str, float], ...], required: float, *, partial: bool, ready: bool,
          band: float, guard: float, guard_until: int, learned: int) -> Verdict:
    """The Verdict for probability `p` at the site's `required`; a first-day `guard` raises the
    threshold (and the Verdict says why); `band` points either side of it are unsure, and
    everything is unsure until the model is `ready`."""
    score = round(probability_to_score(p), 3)
    note = None
    if guard:
        required += guard
        note = (f"first day: required raised by {guard:g} until this site has taught "
                f"{guard_until} messages ({learned} so far)")
    unsure = not ready or abs(score - required) < band
    return Verdict(p, score, required, unsure, clues, partial=partial, note=note)
