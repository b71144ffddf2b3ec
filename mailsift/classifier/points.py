"""Probability -> SpamAssassin-style points, numpy-free (the model and the scorer share it)."""

from __future__ import annotations

import math

LABELS = ("ham", "spam")
MIN_LEARNED = 200  # of each class: from here an empty model decides without caution (readiness.py)

# The probability at which a message scores exactly 5.0 (the default `required`). Missing a
# spam costs a reader a delete; losing a ham to the Junk folder costs far more, so the
# threshold is p = 0.9, not 0.5. Measured on the online stream after 200/200 (unsure band 1
# point): threshold p 0.5 -> 0.9 took ham called spam 0.41% -> 0.20%, spam called ham
# 1.08% -> 2.6% (bogofilter's defaults there: 0.02% and 23.8%).
P_AT_FIVE = 0.9


def probability_to_score(p: float) -> float:
    """SpamAssassin-style points: 5 + 2.5 * log10(odds / 9), clipped to [-10, 20].

    p = 0.9 gives 5.0 (the default `required`), 0.99 gives 7.6, 0.999 gives 10.1,
    0.5 gives 2.6, 0.1 gives 0.2. Each 2.5 points is a factor of 10 in the odds, so a larger
    `required` asks for more certainty: 7.5 needs p >= 0.99, 10 needs p >= 0.999.
    """
    p = min(max(p, 1e-12), 1 - 1e-12)
    odds_at_five = P_AT_FIVE / (1.0 - P_AT_FIVE)
    return max(-10.0, min(20.0, 5.0 + 2.5 * math.log10(p / (1.0 - p) / odds_at_five)))


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


# Each part of the fused log-odds (the words': NB + word LR; the characters') is bounded softly
# (ModelSettings.z_bound; a model file without the setting scores with this: unbounded).
Z_BOUND = 0.0
KNEE = 0.75  # of the bound: a part is left as it is up to here


def bounded(z: float, bound: float) -> float:
    """A member's log-odds bounded softly: z itself while |z| is at most KNEE * bound (at 12:
    9, p 0.99988, beyond every threshold and the first-day guard's), then the rest of the way to
    the bound along a tanh, k + (bound - k) tanh((|z| - k) / (bound - k)) with k = KNEE * bound
    (slope 1 at the knee), never beyond it; bound 0: z as it is. Measured against
    bound * tanh(z / bound), which bends every score: as good on long, noisy streams, and a
    small model's decisions and ranking stay as they were (docs/classifier.md)."""
    if not bound:
        return z
    knee = KNEE * bound
    a = abs(z)
    if a <= knee:
        return z
    rest = bound - knee
    return math.copysign(knee + rest * math.tanh((a - knee) / rest), z)
