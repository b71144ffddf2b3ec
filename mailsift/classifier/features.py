"""Hashed binary features: tokens -> sorted unique column indices.

The hash is CRC-32 of the token's UTF-8 bytes, masked to `bits` bits: stable across processes
and Python versions (unlike `hash()`), and about 3x faster per message here than calling
sklearn's murmurhash FeatureHasher one message at a time (70 us vs 240 us for ~400 tokens).
Duplicates are dropped first (dict.fromkeys, in C) and the hashing runs through map() over
builtins, with no Python-level loop per token.
Features are binary (a token counts once per message), as in bogofilter and the TREC online
filters: repeating a word does not make a message spammier.
"""

from __future__ import annotations

from collections.abc import Sequence
from zlib import crc32

import numpy as np


class TokenNames(Sequence[str]):
    """names[i] is a token that hashed to the i-th feature index (looked up lazily)."""

    __slots__ = ("_tokens", "_first")

    def __init__(self, tokens: list[str], first: np.ndarray) -> None:
        self._tokens = tokens
        self._first = first

    def __len__(self) -> int:
        return len(self._first)

    def __getitem__(self, i):  # type: ignore[no-untyped-def, override]
        if isinstance(i, slice):
            return [self._tokens[j] for j in self._first[i]]
        return self._tokens[int(self._first[i])]


def _encode_all(tokens: list[str]) -> list[bytes]:
    try:
        return list(map(str.encode, tokens))
    except UnicodeEncodeError:  # lone surrogates from a surrogateescape'd header
        return [t.encode("utf-8", "surrogatepass") for t in tokens]


def feature_indices(tokens: list[str], bits: int) -> tuple[np.ndarray, TokenNames]:
    """Sorted unique feature indices of `tokens`, and one token naming each index."""
    uniq = list(dict.fromkeys(tokens))
    hashes = np.fromiter(map(crc32, _encode_all(uniq)), dtype=np.int64, count=len(uniq))
    hashes &= (1 << bits) - 1
    idx, first = np.unique(hashes, return_index=True)
    return idx, TokenNames(uniq, first)


def sorted_unique(columns: np.ndarray) -> np.ndarray:
    """np.unique(columns), by sorting. numpy 2.3+ finds the unique values of a plain np.unique
    call by hashing, which is several times slower here: measured on 2,000,000 feature columns
    (the weights a long learn run marks stale) 3.0 s against 0.29 s, on 1,500 (one learned
    message) 296 us against 93 us."""
    ordered = np.sort(columns)
    keep = np.empty(len(ordered), dtype=bool)
    if len(keep):
        keep[0] = True
        np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]
