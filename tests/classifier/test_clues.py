"""The report's clues: the model (numpy) and the scorer (none) pick and order them alike."""

from __future__ import annotations

import random

import numpy as np

from mailsift.classifier import model, scorer
from mailsift.classifier.clues import select_clues


def test_ties_are_broken_by_name_whatever_the_input_order() -> None:
    cands = [(-0.24, "sender:shape:a-a"), (-0.24, "rpath:shape:a-a"), (-0.41, "prec:bulk"), (0.3, "x")]
    want = (("prec:bulk", -0.41), ("x", 0.3), ("rpath:shape:a-a", -0.24), ("sender:shape:a-a", -0.24))
    for _ in range(10):
        random.shuffle(cands)
        assert select_clues(cands) == want


def test_model_and_scorer_pick_the_same_clues_with_ties_at_the_cut_off() -> None:
    rng = random.Random(7)
    for n in (3, 10, 11, 40, 64, 65, 300):
        for _ in range(20):
            # few distinct weights: ties everywhere, at both cut-offs too
            contrib = [rng.choice((-0.5, -0.24, -0.1, 0.0, 0.1, 0.24, 0.7)) for _ in range(n)]
            names = [f"t{rng.randrange(10**6)}:{i}" for i in range(n)]
            a = model._clues(np.array(contrib), names)
            b = scorer._clues(contrib, names)
            assert a == b
