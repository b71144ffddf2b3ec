"""LIST/LSUB patterns (RFC 3501 6.3.8): `*` matches anything, `%` anything but the hierarchy
separator, every other character itself.

Matched by walking the set of pattern positions a name can have reached (a Thompson-style NFA
run), never by backtracking: a name of n characters against a pattern of m costs at most
O(n * m) steps, whatever the pattern. (A regular expression built from the pattern, as before,
backtracked: `*******x` against a 60-character name took more than a second, ten stars hours.)
Runs of wildcards collapse to one first (`**%*` is `*`, `%%` is `%`). Pure.
"""

from __future__ import annotations

from typing import Callable

STAR = "*"
PERCENT = "%"


def _tokens(pattern: str) -> list[str]:
    """The pattern's characters with each run of wildcards collapsed to one: `*` when the run
    holds a `*`, else `%`."""
    out: list[str] = []
    for c in pattern:
        if c in (STAR, PERCENT) and out and out[-1] in (STAR, PERCENT):
            if c == STAR:
                out[-1] = STAR
            continue
        out.append(c)
    return out


def compile_pattern(pattern: str, separator: str) -> Callable[[str], bool]:
    """A function telling whether a (decoded) mailbox name matches `pattern`."""
    toks = _tokens(pattern)
    end = len(toks)
    if not any(t in (STAR, PERCENT) for t in toks):
        literal = "".join(toks)
        return lambda name: name == literal

    def closure(states: set[int]) -> set[int]:
        # a wildcard may match nothing: the position after it is reached too (runs are collapsed,
        # so one step suffices)
        return states | {s + 1 for s in states if s < end and toks[s] in (STAR, PERCENT)}

    start = closure({0})

    def match(name: str) -> bool:
        states = start
        for ch in name:
            nxt: set[int] = set()
            for s in states:
                if s == end:
                    continue
                t = toks[s]
                if t == STAR or (t == PERCENT and ch != separator):
                    nxt.add(s)
                elif t == ch:
                    nxt.add(s + 1)
            if not nxt:
                return False
            states = closure(nxt)
        return end in states

    return match


def ancestors(name: str, separator: str) -> list[str]:
    """The names above `name` in the hierarchy, outermost first: `a.b.c` -> [`a`, `a.b`]."""
    parts = name.split(separator)
    return [separator.join(parts[:k]) for k in range(1, len(parts))]


def lsub_parents(subscribed: set[str], matches: Callable[[str], bool], separator: str) -> list[str]:
    """RFC 3501 6.3.9: the unsubscribed parents LSUB returns with \\Noselect: those the pattern
    matches of a subscribed name it does not match (`%` stops at a separator: with `a.b`
    subscribed and `a` not, `LSUB "" %` answers `a`), sorted."""
    out = {p for s in subscribed if not matches(s)
           for p in ancestors(s, separator) if p not in subscribed and matches(p)}
    return sorted(out)
