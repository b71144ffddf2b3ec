"""ESEARCH (RFC 4731) and its use by ESORT (RFC 5267): `SEARCH RETURN (MIN MAX ALL COUNT SAVE)`.

Pure: the session hands in the numbers a SEARCH (or SORT) found, in the order it answers them,
and gets back the `* ESEARCH` line and the numbers SEARCHRES (RFC 5182) saves. The layout of the
line follows Dovecot 2.3: `(TAG "t") [UID] MIN n MAX n ALL set COUNT n [MODSEQ n]`; with
nothing found only COUNT (when asked) is left.
"""

from __future__ import annotations

from mailsift.protocols.imap.parser import ParseError
from mailsift.protocols.imap.response import quoted

RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE")


def parse_returns(options: tuple[str, ...], tag: bytes | None = None) -> frozenset[str]:
    """The RETURN options of a SEARCH/SORT; `RETURN ()` means `RETURN (ALL)`."""
    for opt in options:
        if opt not in RETURN_OPTIONS:
            raise ParseError(f"unknown SEARCH return option {opt}", tag)
    return frozenset(options) if options else frozenset({"ALL"})


def sequence_set(numbers: list[int], ordered: bool = False) -> str:
    """`1 2 3 5` -> `1:3,5`. Sorted first unless `ordered` (ESORT keeps the sort order and joins
    only ascending neighbours: `3 1 2 4` -> `3,1:2,4`)."""
    nums = list(numbers) if ordered else sorted(set(numbers))
    out: list[str] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        out.append(str(nums[i]) if i == j else f"{nums[i]}:{nums[j]}")
        i = j + 1
    return ",".join(out)


def response(tag: bytes, uid: bool, returns: frozenset[str], found: list[int],
             modseq: int | None = None, ordered: bool = False) -> bytes | None:
    """The `ESEARCH ...` untagged text (without `* ` and CRLF), or None when SAVE is the only
    option (RFC 5182 2.4: then no ESEARCH response is sent). `found` in answer order: ascending
    for SEARCH, the sort order for SORT (`ordered`): MIN and MAX are then its first and last."""
    if returns == {"SAVE"}:
        return None
    out = b"ESEARCH (TAG " + quoted(tag) + b")"
    if uid:
        out += b" UID"
    if found:
        lo, hi = (found[0], found[-1]) if ordered else (min(found), max(found))
        if "MIN" in returns:
            out += b" MIN %d" % lo
        if "MAX" in returns:
            out += b" MAX %d" % hi
        if "ALL" in returns:
            out += b" ALL " + sequence_set(found, ordered).encode()
    if "COUNT" in returns:
        out += b" COUNT %d" % len(found)
    if modseq is not None and found:
        out += b" MODSEQ %d" % modseq
    return out


def to_save(returns: frozenset[str], found: list[int], ordered: bool = False) -> list[int]:
    """What RETURN (SAVE) keeps (RFC 5182 2.4): everything, unless MIN and/or MAX come without
    ALL and COUNT; then only the minimum and/or maximum."""
    if not found or returns & {"ALL", "COUNT"} or not returns & {"MIN", "MAX"}:
        return list(found)
    lo, hi = (found[0], found[-1]) if ordered else (min(found), max(found))
    keep = []
    if "MIN" in returns:
        keep.append(lo)
    if "MAX" in returns and hi not in keep:
        keep.append(hi)
    return keep
