"""Hashed binary features: tokens -> sorted unique column indices.

The hash is CRC-32 of the token's UTF-8 bytes, masked to `bits` bits: stable across processes
and Python versions (unlike `hash()`), and about 3x faster per message here than calling
sklearn's murmurhash FeatureHasher one message at a time (70 us vs 240 us for ~400 tokens).
Features are binary (a token counts once per message), as in bogofilter and the TREC online
filters: repeating a word does not make a message spammier.
"""

from __future__ import annotations

from zlib import crc32

import numpy as np


def feature_indices(tokens: list[str], bits: int) -> tuple[np.ndarray, list[str]]:
    """Sorted unique feature indices of `tokens`, and one token naming each index."""
    mask = (1 << bits) - 1
    by_index: dict[int, str] = {}
    for tok in tokens:
        h = crc32(tok.encode("utf-8", "surrogatepass")) & mask
        if h not in by_index:
            by_index[h] = tok
    idx = np.fromiter(by_index.keys(), dtype=np.int64, count=len(by_index))
    order = np.argsort(idx)
    names = list(by_index.values())
    return idx[order], [names[i] for i in order]
