"""The stale-weight flush (SpamModel._flush_weights): the columns it recomputes are np.unique's,
found by sorting (features.sorted_unique), and the weights it leaves are a full refresh()'s."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mailsift.classifier.api import new_model
from mailsift.classifier.features import sorted_unique


def test_sorted_unique_is_np_unique() -> None:
    rng = np.random.default_rng(7)
    cases = [np.zeros(0, dtype=np.int64), np.array([5]), np.array([3, 3, 3]),
             np.concatenate([rng.integers(0, 1 << 20, 500), rng.integers(0, 1 << 20, 400).astype(np.int32)]),
             rng.integers(0, 50, 10_000).astype(np.int32), rng.integers(0, 1 << 16, 3000).astype(np.uint16)]
    for a in cases:
        got, want = sorted_unique(a), np.unique(a)
        assert got.dtype == want.dtype and np.array_equal(got, want), a[:10]


def test_a_long_run_of_stale_weights_is_flushed_exactly(corpora: Path) -> None:
    """More stale column sets than the model keeps (4,096, as a long learn run leaves them):
    flushed on the spot, to exactly the weights refresh() computes from the counts."""
    paths = sorted(p for p in (corpora / "spamassassin" / "easy_ham").iterdir() if p.is_file())[:40]
    spam = sorted(p for p in (corpora / "spamassassin" / "spam_2").iterdir() if p.is_file())[:40]
    model = new_model(hash_bits=16)
    for h, s in zip(paths, spam):
        model.learn(h.read_bytes(), "ham")
        model.learn(s.read_bytes(), "spam")
    model.spamminess(spam[0].read_bytes())  # weights current
    rng = np.random.default_rng(3)
    for _ in range(4097):  # the 4,097th set flushes them all
        cols = np.unique(rng.integers(0, 1 << 16, 300))
        model.feature_count[1, cols] += 1.0  # as a learned message would
        model._set_weights(cols)
    assert not model.__dict__.get("_dirty"), "the flush did not run"
    flushed = model.weights.copy()
    model.refresh()
    assert np.array_equal(flushed, model.weights)
