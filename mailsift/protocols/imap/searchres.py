"""SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE)` keeps what it found; `$` names it later.

The session keeps the saved messages as UIDs of the selected folder (so an expunge drops them
and new mail never joins them) and, before a command runs, binds every `$` in it (parser's
SavedResult, as a sequence set or as a search key) to those messages: UIDs for UID commands and
search keys, the current sequence numbers of the same messages for the others. Pure.
"""

from __future__ import annotations

from typing import Any

from mailsift.protocols.imap.parser import SavedResult, SearchKey, SequenceSet


def number_set(numbers: list[int]) -> SequenceSet:
    """An explicit sequence set of these numbers (runs joined); empty matches nothing."""
    nums = sorted(set(numbers))
    ranges: list[tuple[int | None, int | None]] = []
    i = 0
    while i < len(nums):
        j = i
        while j + 1 < len(nums) and nums[j + 1] == nums[j] + 1:
            j += 1
        ranges.append((nums[i], nums[j]))
        i = j + 1
    return SequenceSet(tuple(ranges))


def uses_saved(key: Any) -> bool:
    """Whether a search key (tree) mentions `$`."""
    if not isinstance(key, SearchKey):
        return False
    if key.op in ("SEQ", "UID"):
        return isinstance(key.args[0], SavedResult)
    return any(uses_saved(a) for a in key.args)


def bind_key(key: SearchKey, uids: list[int]) -> SearchKey:
    """The key with `$` (as `$` or `UID $`) replaced by a UID set of the saved messages."""
    if key.op in ("SEQ", "UID"):
        if isinstance(key.args[0], SavedResult):
            return SearchKey("UID", (number_set(uids),))
        return key
    if not any(isinstance(a, SearchKey) for a in key.args):
        return key
    return SearchKey(key.op, tuple(bind_key(a, uids) if isinstance(a, SearchKey) else a for a in key.args))
