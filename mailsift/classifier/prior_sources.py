"""What the default model's sources teach differently (mark_prior's prior_source_diff).

`make model` trains the default model on two public corpora, each collected at its own site
(SpamAssassin's and CSDMC2010's). A token one of them calls sure spam and the other calls
ham (a mailing list's name, a mail server's `rcvd:` token, a month of the collection, "all
rights reserved" in one corpus's newsletters and the other's spam) says where the corpus
was collected, not what spam is: mark_prior drops it as it drops a rare token. Each
source's evidence for a token is its NB log-ratio from message counts per class,

    r = log((n_spam + 0.5) / (N_spam + 1)) - log((n_ham + 0.5) / (N_ham + 1))

(n: the source's messages of that class holding the token, N: all its messages of that
class), and a token both sources hold is dropped when their r differ by more than the
setting (5). Measured in docs/classifier.md ("Two sources").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class SourceCounts:
    """Messages per source, class and hashed column, gathered while the prior is learned."""

    def __init__(self, names: Sequence[str], n_features: int) -> None:
        self.names = list(names)
        self.counts = np.zeros((len(self.names), 2, n_features), dtype=np.float32)
        self.totals = np.zeros((len(self.names), 2), dtype=np.float64)

    def add(self, source: str, idx: np.ndarray, label: str) -> None:
        """One message of `source` with the (distinct) columns `idx`, labelled `label`."""
        s, y = self.names.index(source), 1 if label == "spam" else 0
        self.counts[s, y, idx] += 1.0
        self.totals[s, y] += 1.0

    def ratios(self) -> np.ndarray:
        """Each source's log-ratio per column (the module docstring's r), shape (sources, n)."""
        c, t = self.counts.astype(np.float64), self.totals
        return np.log((c[:, 1] + 0.5) / (t[:, 1, None] + 1.0)) - np.log((c[:, 0] + 0.5) / (t[:, 0, None] + 1.0))

    def disagreeing(self, diff: float) -> np.ndarray:
        """Columns two or more sources hold whose log-ratios differ by more than `diff`."""
        n = self.counts.shape[2]
        held = self.counts.sum(axis=1) > 0
        if diff <= 0 or len(self.names) < 2:
            return np.zeros(n, dtype=bool)
        r = self.ratios()
        spread = np.where(held, r, -np.inf).max(axis=0) - np.where(held, r, np.inf).min(axis=0)
        return (held.sum(axis=0) >= 2) & (spread > diff)
