"""The model file's layout: a small JSON header, then raw arrays, read without unpickling.

    offset 0   MAGIC (8 bytes), header length (uint32 LE), 4 bytes reserved (0)
    offset 16  the header: UTF-8 JSON (settings, counts, scalars, and one entry per section:
               offset, nbytes, dtype, count, codec)
    then       the sections, each starting on an 8-byte boundary

Sections with codec "raw" are little-endian arrays read in place (memory-mapped): what scoring
needs, `word_keys` (sorted uint32 feature columns the model has seen) with `word_weights` (the
float32 weight per column, see SpamModel.refresh) and `char_keys`/`char_coef` for the
character 4-gram member. Sections with codec "zlib" hold what only learning needs (NB counts,
LR weights in float64, AdaGrad sums, rehearsal buffers) compressed, and are read only by
the full loader. A column not in `word_keys` has weight 0 (no counts, no LR weight), so the
file holds only the features seen: it grows with what was learned.

This module imports nothing heavy: the scorer (scorer.py) reads the header and maps the raw
sections through it without numpy. Writing (`write`) and reading arrays (`arrays`) use numpy.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from typing import Any, BinaryIO

MAGIC = b"MSIFTMDL"
FILE_FORMAT = 3
_PREFIX = struct.Struct("<8sII")
MAX_HEADER = 1 << 20
# zlib level of compressed sections. Measured on the model after 2,000 messages of the shared
# stream: level 6 4.93 MB in 0.36 s of CPU, level 4 4.96 MB in 0.16 s, level 1 5.09 MB in 0.11 s.
LEVEL = 4


class FormatError(ValueError):
    """Not a model file of this format, or a truncated one."""


def write(fh: BinaryIO, header: dict[str, Any], sections: dict[str, Any], compressed: set[str],
          delta: frozenset[str] = frozenset()) -> None:
    """Write `header` and the numpy arrays `sections`. Those named in `compressed` are zlib'd
    (byte-shuffled first where that helps); integer ones also named in `delta` (runs of
    ascending values: rehearsal buffers) as differences first."""
    import numpy as np

    def pack(item: tuple[str, Any]) -> tuple[bytes, dict[str, Any]]:
        name, arr = item
        a = np.ascontiguousarray(arr)
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        raw = a.tobytes()
        codec, blob, shuffle = "raw", raw, False
        if name in compressed:
            codec = "zlib"
            packed = a
            if name in delta and a.dtype.kind in "iu":
                codec = "zlib-delta"
                packed = np.diff(a.astype(np.int64), prepend=0).astype(a.dtype.str.replace("u", "i"))
            # Byte-shuffled (the i-th bytes of all items together) when that compresses a
            # sample better: counts and rehearsal columns do, LR weights do not.
            sample = packed[:8192]
            shuffle = len(zlib.compress(_shuffled(sample), LEVEL)) < len(zlib.compress(sample.tobytes(), LEVEL))
            blob = zlib.compress(_shuffled(packed) if shuffle else packed.tobytes(), LEVEL)
        return blob, {"dtype": a.dtype.str, "count": int(a.size), "codec": codec, "nbytes": len(blob),
                      "raw_nbytes": len(raw), "shuffle": shuffle}

    # zlib releases the GIL: the sections compress side by side
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=4) as pool:
        packed_sections = list(pool.map(pack, sections.items()))
    blobs = [b for b, _ in packed_sections]
    entries = {name: e for name, (_, e) in zip(sections, packed_sections)}
    # Offsets depend on the header's length, which depends on the offsets' digits: fix the
    # header's size first with placeholder offsets of the final width.
    head = dict(header)
    head["format"] = FILE_FORMAT
    head["sections"] = entries
    for e in entries.values():
        e["offset"] = 10**12
    size = len(json.dumps(head, sort_keys=True).encode())
    start = _align(_PREFIX.size + size + 16)
    pos = start
    for e, blob in zip(entries.values(), blobs):
        e["offset"] = pos
        pos = _align(pos + len(blob))
    text = json.dumps(head, sort_keys=True).encode()
    if len(text) > start - _PREFIX.size:
        raise AssertionError("model header grew while writing")
    fh.write(_PREFIX.pack(MAGIC, len(text), 0))
    fh.write(text)
    fh.write(b"\0" * (start - _PREFIX.size - len(text)))
    here = start
    for e, blob in zip(entries.values(), blobs):
        fh.write(blob)
        here += len(blob)
        pad = _align(here) - here
        fh.write(b"\0" * pad)
        here += pad


def _shuffled(a: Any) -> bytes:
    return a.view("u1").reshape(-1, a.dtype.itemsize).T.tobytes()


def _align(n: int) -> int:
    return (n + 7) & ~7


def read_header(buf: Any, size: int) -> dict[str, Any]:
    """The header of a model file held in `buf` (bytes, mmap) of `size` bytes; FormatError if it
    is not one or a section lies outside the file."""
    if size < _PREFIX.size:
        raise FormatError("too short for a mailsift model file")
    magic, length, _ = _PREFIX.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("not a mailsift model file (bad magic)")
    if length > MAX_HEADER or _PREFIX.size + length > size:
        raise FormatError("truncated model header")
    try:
        head = json.loads(bytes(buf[_PREFIX.size:_PREFIX.size + length]))
    except ValueError as exc:
        raise FormatError(f"unreadable model header: {exc}") from None
    if not isinstance(head, dict) or head.get("format") != FILE_FORMAT or not isinstance(head.get("sections"), dict):
        raise FormatError(f"model file format {head.get('format') if isinstance(head, dict) else '?'!r}, "
                          f"this mailsift reads {FILE_FORMAT}")
    for name, e in head["sections"].items():
        try:
            end = int(e["offset"]) + int(e["nbytes"])
            ok = int(e["offset"]) >= _PREFIX.size + length and end <= size
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise FormatError(f"model section {name} lies outside the file (truncated?)")
    return head


_CODES = {"<u4": "I", "<f4": "f", "<i4": "i", "<f8": "d", "<u2": "H", "|u1": "B", "<u8": "Q"}


def view(buf: Any, head: dict[str, Any], name: str) -> memoryview:
    """A raw section as a typed memoryview into `buf` (no copy, no numpy). Little-endian hosts."""
    e = head["sections"][name]
    if e["codec"] != "raw" or e["dtype"] not in _CODES or sys.byteorder != "little":
        raise FormatError(f"section {name} cannot be mapped here")
    mv = memoryview(buf)[e["offset"]:e["offset"] + e["nbytes"]]
    out = mv.cast(_CODES[e["dtype"]])
    if len(out) != e["count"]:
        raise FormatError(f"section {name} has {len(out)} items, the header says {e['count']}")
    return out


def arrays(buf: Any, head: dict[str, Any]) -> dict[str, Any]:
    """Every section as a numpy array (raw ones copied out of `buf`, zlib ones inflated)."""
    import numpy as np

    out = {}
    for name, e in head["sections"].items():
        blob = bytes(buf[e["offset"]:e["offset"] + e["nbytes"]])
        dtype = np.dtype(e["dtype"])
        count = int(e["count"])
        if e["codec"] in ("zlib", "zlib-delta"):
            try:
                blob = zlib.decompress(blob)
            except zlib.error as exc:
                raise FormatError(f"section {name} is corrupt: {exc}") from None
            if len(blob) != dtype.itemsize * count:
                raise FormatError(f"section {name} is {len(blob)} bytes, the header says {count} items")
            if e.get("shuffle"):
                blob = np.frombuffer(blob, dtype=np.uint8).reshape(dtype.itemsize, count).T.tobytes()
            if e["codec"] == "zlib-delta":
                diffs = np.frombuffer(blob, dtype=np.dtype(e["dtype"].replace("u", "i")))
                blob = np.cumsum(diffs, dtype=np.int64).astype(dtype).tobytes()
        elif e["codec"] != "raw":
            raise FormatError(f"section {name} has unknown codec {e['codec']!r}")
        if len(blob) != dtype.itemsize * count:
            raise FormatError(f"section {name} is {len(blob)} bytes, the header says {count} items")
        out[name] = np.frombuffer(blob, dtype=dtype).astype(dtype.newbyteorder("="), copy=True)
    return out
