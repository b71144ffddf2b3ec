"""One-message scoring straight from model.bin: no numpy, no scikit-learn, no unpickling.

`mailsift classify` on one message (a procmail/maildrop/Sieve pipeline runs one process per
message) spends its time starting up: importing numpy alone costs ~90 ms and 15 MB here. This
scorer maps model.bin (modelfile.py) and reads only the pages it needs: the header, the word
buckets of the message's columns (one byte per seen column), their float32 weights and the
character member's weights. Everything it computes is what SpamModel.verdict computes, in the
same order, from the same data the model file holds (the settings in its header: hash bits,
alpha, fusion weights, guard...), so a verdict here is the full model's verdict:
    words = sum(w[j] / sqrt(k)) + nb_weight / sqrt(k) * (NB constant + prior) + lr_intercept
    chars = char_weight * (sum(coef[c]) / sqrt(m) + char_intercept)
    z = bounded(words, B) + bounded(chars, B)     (points.bounded, B = z_bound; 0: words + chars)
numpy's pairwise summation is reproduced (float32 for the character member, whose weights
numpy sums in float32), so probabilities agree with SpamModel's to the last bit in practice
(tests/classifier/test_model_format.py checks 1e-12 over the shared corpora).

    scorer = load_scorer("models")   # None when the model is of the old format (load_model converts)
    scorer.verdict(raw, required=5.0) -> Verdict
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import sys
import time
from array import array
from operator import add as _add
from zlib import crc32

from mailsift.classifier import modelfile
from mailsift.classifier.clues import select_clues
from mailsift.classifier.modelcheck import (
    LEGACY_FORMAT,
    MODEL_FILE,
    ModelError,
    check_pickle_owner,
    read_sidecar,
)
from mailsift.classifier.points import Z_BOUND, bounded, sigmoid
from mailsift.classifier.readiness import READY_FROM, Readiness, assess
from mailsift.classifier.reputation import sender_keys, shift_of
from mailsift.classifier.tokenize import TOKENIZER_VERSION, tokenize_sender
from mailsift.classifier.judge import judge
from mailsift.verdict import Verdict

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

_BYTE = [bytes([i]) for i in range(256)]
_F32 = struct.Struct("<f")
_F32x8 = struct.Struct("<8f")
_MULT = 2654435761  # chargrams._MULT
_BLOCK = 128  # numpy's pairwise-summation block (PW_BLOCKSIZE)


def _f32(x: float) -> float:
    return _F32.unpack(_F32.pack(x))[0]


def _same(x: float) -> float:
    return x


def pairwise_sum(a: list[float], single: bool = False) -> float:
    """numpy's add.reduce of a contiguous 1-D array, in its order: blocks of up to 128 summed in
    eight interleaved partial sums, longer runs split in halves (a multiple of 8); `single`
    rounds every step to float32, as numpy does for a float32 array (the eight lanes of a step
    rounded by one struct pack)."""
    r = _f32 if single else _same
    step = (lambda p, q: _F32x8.unpack(_F32x8.pack(*map(_add, p, q)))) if single else \
        (lambda p, q: list(map(_add, p, q)))

    def rec(lo: int, n: int) -> float:
        if n < 8:
            res = 0.0
            for i in range(lo, lo + n):
                res = r(res + a[i])
            return res
        if n <= _BLOCK:
            p = a[lo:lo + 8]
            end = lo + n - (n % 8)
            for i in range(lo + 8, end, 8):
                p = step(p, a[i:i + 8])
            res = r(r(r(p[0] + p[1]) + r(p[2] + p[3])) + r(r(p[4] + p[5]) + r(p[6] + p[7])))
            for i in range(end, lo + n):
                res = r(res + a[i])
            return res
        n2 = n // 2
        n2 -= n2 % 8
        return r(rec(lo, n2) + rec(lo + n2, n - n2))

    return r(0.0 + rec(0, len(a)))


def _encode_all(tokens: list[str]) -> list[bytes]:
    try:
        return list(map(str.encode, tokens))
    except UnicodeEncodeError:  # lone surrogates from a surrogateescape'd header
        return [t.encode("utf-8", "surrogatepass") for t in tokens]


def feature_indices(tokens: list[str], bits: int) -> tuple[list[int], list[str]]:
    """features.feature_indices without numpy: sorted distinct CRC-32 columns, and the first
    token that hashed to each."""
    uniq = list(dict.fromkeys(tokens))
    mask = (1 << bits) - 1
    first: dict[int, int] = {}
    for pos, h in enumerate(map(crc32, _encode_all(uniq))):
        first.setdefault(h & mask, pos)
    idx = sorted(first)
    return idx, [uniq[first[j]] for j in idx]


def char_indices(raw: bytes, bits: int, limit: int) -> list[int]:
    """chargrams.char_indices without numpy: sorted distinct hashed 4-gram columns."""
    head = raw[:limit]
    n = len(head)
    if n < 4:
        return []
    shift = 32 - bits
    values: set[int] = set()
    for k in range(4):
        words = array("I")
        words.frombytes(head[k:k + 4 * ((n - k) // 4)])
        if sys.byteorder != "little":
            words.byteswap()
        values.update([((v * _MULT) & 0xFFFFFFFF) >> shift for v in words])
    return sorted(values)


class Scorer:
    """The verdicts of the model in one model.bin, read in place (see the module docstring)."""

    def __init__(self, path: str | Path, sidecar: dict[str, Any]) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fd)
            check_pickle_owner(path, st, pickle=False)
            if st.st_size == 0:
                raise ModelError(f"model {path} is corrupt: empty")
            self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        try:
            head = modelfile.read_header(self._mm, st.st_size)
            if head.get("model_id") != sidecar.get("model_id"):
                raise _Racy(f"model {path} does not match its sidecar (corrupt or half-written): refusing it")
            self._buckets = modelfile.view(self._mm, head, "word_buckets")
            low = head["sections"]["word_low"]
            if low["codec"] != "raw" or low["count"] != (self._buckets[-1] if len(self._buckets) else 0):
                raise modelfile.FormatError("word columns do not match their buckets")
            self._low = (int(low["offset"]), int(low["count"]))
            self._weights = modelfile.view(self._mm, head, "word_weights")
            if len(self._weights) != self._low[1]:
                raise modelfile.FormatError("word weights do not match the columns")
            self._char_coef = modelfile.view(self._mm, head, "char_coef")
            self._char_keys = modelfile.view(self._mm, head, "char_keys") if "char_keys" in head["sections"] else None
            s = head["settings"]
            self.hash_bits = int(s["hash_bits"])
            self.alpha = float(s["alpha"])
            self.nb_weight = float(s["nb_weight"])
            self.lr_weight = float(s["lr_weight"])
            self.char_weight = float(s["char_weight"])
            self.char_bits = int(s["char_bits"])
            self.char_bytes = int(s["char_bytes"])
            self.max_bytes = int(s["max_bytes"])
            self.unsure_points = float(s["unsure_points"])
            self.guard_points = float(s["guard_points"])
            self.guard_until = int(s["guard_until"])
            self.ready_from = int(s.get("ready_from", READY_FROM))
            self.z_bound = float(s.get("z_bound", Z_BOUND))
            self.sender_weight = float(s.get("sender_weight", 0.0))
            self.sender_prior = float(s.get("sender_prior", 1.0))
            self._rep = None
            if "rep_keys" in head["sections"]:
                rep = tuple(modelfile.view(self._mm, head, n) for n in ("rep_keys", "rep_ham", "rep_spam"))
                if not len(rep[0]) == len(rep[1]) == len(rep[2]):
                    raise modelfile.FormatError("reputation sections differ in length")
                self._rep = rep if len(rep[0]) else None
            self.class_count = [float(x) for x in head["class_count"]]
            self.prior_counts = [float(x) for x in head["prior_counts"]]
            self.totals = [float(x) for x in head["totals"]]
            self.lr_intercept = float(head["lr_intercept"])
            self.char_intercept = float(head["chars"]["intercept"])
            self.char_learned = int(head["chars"]["learned"])
            self.generation = int(head["generation"])
            self.changed_at = float(head["changed_at"])
        except (modelfile.FormatError, KeyError, TypeError, ValueError, IndexError) as exc:
            self._mm.close()
            raise ModelError(f"model {path} is corrupt: {type(exc).__name__}: {exc}") from None
        except BaseException:
            self._mm.close()
            raise
        if (self.n_ham_, self.n_spam_) != (sidecar.get("n_ham"), sidecar.get("n_spam")):
            self._mm.close()
            raise _Racy(f"model {path} counts differ from its sidecar: refusing it")

    def close(self) -> None:
        self._mm.close()

    # -- what SpamModel tells about itself ------------------------------------------------
    @property
    def n_ham_(self) -> int:
        return int(round(self.class_count[0]))

    @property
    def n_spam_(self) -> int:
        return int(round(self.class_count[1]))

    def readiness(self) -> Readiness:
        return assess(self.class_count, self.prior_counts, guard_points=self.guard_points,
                      guard_until=self.guard_until, ready_from=self.ready_from)

    def ready(self) -> bool:
        return self.readiness().ready

    def local_learned(self) -> int:
        cc, pc = self.class_count, self.prior_counts
        return max(0, int(round((cc[0] - pc[0]) + (cc[1] - pc[1]))))

    def guard(self) -> float:
        return self.readiness().guard

    # -- scoring --------------------------------------------------------------------------
    def _word_weights(self, idx: list[int]) -> list[float]:
        buckets, weights = self._buckets, self._weights
        nb = len(buckets) - 1
        base, _ = self._low
        find = self._mm.find
        out = []
        for j in idx:
            b = j >> 8
            w = 0.0  # a column never seen: no counts, no LR weight
            if b < nb:
                lo, hi = buckets[b], buckets[b + 1]
                if hi > lo:
                    pos = find(_BYTE[j & 0xFF], base + lo, base + hi)
                    if pos >= 0:
                        w = weights[pos - base]
            out.append(w)
        return out

    def _contributions(self, idx: list[int]) -> tuple[list[float], float]:
        k = len(idx)
        if k == 0:
            return [], 0.0
        n = 1 << self.hash_bits
        a = self.alpha
        t0, t1 = self.totals
        nb_const = k * (math.log(t0 + a * n) - math.log(t1 + a * n))
        cc = self.class_count
        prior = math.log((cc[1] + 1.0) / (cc[0] + 1.0))
        inv = 1.0 / math.sqrt(k)
        contrib = [w * inv for w in self._word_weights(idx)]
        return contrib, self.nb_weight * inv * (nb_const + prior) + self.lr_weight * self.lr_intercept

    def _char_z(self, raw: bytes) -> float:
        if self.char_learned <= 0 or not self.char_weight:
            return 0.0
        cidx = char_indices(raw, self.char_bits, self.char_bytes)
        if not cidx:
            return 0.0
        coef = self._char_coef
        if self._char_keys is None:
            values = [coef[c] for c in cidx]
        else:
            from bisect import bisect_left

            keys, values, lo = self._char_keys, [], 0
            for c in cidx:
                lo = bisect_left(keys, c, lo)
                values.append(coef[lo] if lo < len(keys) and keys[lo] == c else 0.0)
        return self.char_weight * (pairwise_sum(values, single=True) / math.sqrt(len(cidx)) + self.char_intercept)

    def _rep_counts(self, key: int) -> tuple[int, int] | None:
        from bisect import bisect_left

        keys, ham, spam = self._rep  # type: ignore[misc]
        i = bisect_left(keys, key)
        return (ham[i], spam[i]) if i < len(keys) and keys[i] == key else None

    def sender_shift(self, sender: tuple[str, str, str]) -> float:
        """SpamModel.sender_shift: the sender reputation's share of z."""
        if self._rep is None or not self.sender_weight:
            return 0.0
        return shift_of(self._rep_counts, sender_keys(sender), self.sender_weight, self.sender_prior)[0]

    def spamminess(self, raw: bytes) -> float:
        tokens, sender = tokenize_sender(raw, self.max_bytes)
        idx, _ = feature_indices(tokens, self.hash_bits)
        contrib, const = self._contributions(idx)
        return sigmoid(self._z(pairwise_sum(contrib) + const, self._char_z(raw)) + self.sender_shift(sender))

    def _z(self, words: float, chars: float) -> float:
        """SpamModel._z: the words' and the characters' parts, each bounded."""
        return bounded(words, self.z_bound) + bounded(chars, self.z_bound)

    def verdict(self, raw: bytes, required: float = 5.0, max_bytes: int | None = None,
                unsure_points: float | None = None) -> Verdict:
        """SpamModel.verdict, from the mapped file; never raises on bad input."""
        limit = max_bytes if max_bytes is not None else self.max_bytes
        try:
            partial = len(raw) > limit
            tokens, sender = tokenize_sender(raw, limit)
            idx, names = feature_indices(tokens, self.hash_bits)
            contrib, const = self._contributions(idx)
            shift = self.sender_shift(sender)
            p = sigmoid(self._z(pairwise_sum(contrib) + const, self._char_z(raw)) + shift)
            clues = _clues(contrib, names)
            if shift:
                clues = (("sender:history", round(shift, 4)), *clues)
        except Exception as exc:  # noqa: BLE001 - our fault: no verdict, never a crash
            return Verdict(None, 0.0, required, reason=f"classifier error: {type(exc).__name__}")
        return judge(p, clues, required, partial=partial,
                     band=self.unsure_points if unsure_points is None else unsure_points,
                     readiness=self.readiness())


def _clues(contrib: list[float], names: list[str], limit: int = 5) -> tuple[tuple[str, float], ...]:
    """model._clues: the `limit` strongest spammy and hammy tokens, strongest first."""
    return select_clues([(round(c * 10000.0) / 10000.0, names[i]) for i, c in enumerate(contrib)], limit)


class _Racy(ModelError):
    """Model and sidecar disagree; possibly a writer between its two renames."""


def load_scorer(dbpath: str | Path, retries: int = 3) -> Scorer | None:
    """The scorer of the model in `dbpath`; None when it is of the old format (load it with
    persist.load_model, which converts it). Raises ModelError as load_model does."""
    d = os.fspath(dbpath)  # not pathlib: a one-message `classify` would import it for this alone
    last: ModelError | None = None
    for attempt in range(retries):
        meta = read_sidecar(d, legacy=True)
        if meta.get("format_version") == LEGACY_FORMAT:
            return None
        try:
            scorer = Scorer(os.path.join(d, MODEL_FILE), meta)
        except _Racy as exc:
            last = ModelError(str(exc))
            time.sleep(0.05 * (attempt + 1))
            continue
        if meta.get("tokenizer_version") != TOKENIZER_VERSION:
            import logging

            logging.getLogger("mailsift.classifier").warning(
                "model in %s was trained with tokenizer version %s, this is %s: it works, but retrain "
                "(or relearn your folders) for full accuracy", d, meta.get("tokenizer_version"), TOKENIZER_VERSION)
        return scorer
    assert last is not None
    raise last


__all__ = ["Scorer", "char_indices", "feature_indices", "load_scorer", "pairwise_sum"]
