"""Which names LIST answers, and how: RFC 3501 LIST, LIST-EXTENDED (RFC 5258: selection options
SUBSCRIBED, REMOTE, RECURSIVEMATCH; return options SUBSCRIBED, CHILDREN; several patterns),
SPECIAL-USE (RFC 6154) and LIST-STATUS (RFC 5819). Pure: folders and subscriptions in, entries
out; the session formats them and fetches the STATUS data.

Where the RFCs leave a choice, Dovecot 2.3 is followed (tests/imap/test_listext_dovecot.py):
- the extended form (a selection list, a RETURN, or a list of patterns) reports \\HasChildren /
  \\HasNoChildren only for RETURN (CHILDREN), special uses only for SPECIAL-USE (selection or
  return), and a missing name as \\NonExistent; the plain form always reports children and
  special uses, and a missing parent as \\Noselect;
- CHILDINFO ("SUBSCRIBED") goes with a name that meets the selection and has a subscribed
  descendant, or that does not meet it but has a subscribed descendant no pattern matches
  (a redundant CHILDINFO is suppressed, RFC 5258 section 3.5).

Patterns are matched in O(len(name) x wildcards) per name, never through a regular expression.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

CAPABILITIES = ("LIST-EXTENDED", "LIST-STATUS")


@dataclass(frozen=True)
class Folder:
    name: str
    special_use: str | None = None


@dataclass(frozen=True)
class Request:
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()
    returns: frozenset[str] = frozenset()
    extended: bool = False


@dataclass(frozen=True)
class Entry:
    name: str
    attrs: tuple[str, ...]
    childinfo: bool = False     # ("CHILDINFO" ("SUBSCRIBED"))
    selectable: bool = True     # exists and meets the selection: LIST-STATUS reports on it


def _squeeze(pattern: str) -> str:
    """Runs of wildcards collapse: `*` absorbs `%`; `%%` is `%`."""
    out: list[str] = []
    for c in pattern:
        if c in "*%" and out and out[-1] in "*%":
            if c == "*":
                out[-1] = "*"
            continue
        out.append(c)
    return "".join(out)


def wildcard_match(pattern: str, name: str, separator: str) -> bool:
    """`*` matches anything, `%` anything but the separator (RFC 3501 6.3.8). A set-of-states
    walk over the pattern: no backtracking, at most len(name) x len(pattern) steps, and the
    squeezed pattern has no two wildcards in a row."""
    pattern = _squeeze(pattern)
    literal = sum(1 for c in pattern if c not in "*%")
    if literal > len(name):
        return False
    n = len(pattern)

    def close(states: set[int]) -> set[int]:
        # a wildcard may match nothing: being before it is being after it too
        out = set(states)
        for i in sorted(states):
            j = i
            while j < n and pattern[j] in "*%":
                j += 1
                out.add(j)
        return out

    states = close({0})
    for ch in name:
        nxt: set[int] = set()
        for i in states:
            if i >= n:
                continue
            p = pattern[i]
            if p == "*" or (p == "%" and ch != separator):
                nxt.add(i)              # the wildcard eats this character
            elif p == ch:
                nxt.add(i + 1)
        if not nxt:
            return False
        states = close(nxt)
    return n in states


def canonical_pattern(reference: str, pattern: str, separator: str) -> str:
    """reference + pattern, with a leading INBOX (as a whole hierarchy element) in upper case."""
    full = reference + pattern
    if full[:5].upper() == "INBOX" and (len(full) == 5 or full[5] == separator):
        full = "INBOX" + full[5:]
    return full


def _ancestors(name: str, separator: str) -> Iterable[str]:
    parts = name.split(separator)
    for i in range(1, len(parts)):
        yield separator.join(parts[:i])


def entries(req: Request, folders: Iterable[Folder], subscribed: Iterable[str],
            separator: str = ".") -> list[Entry]:
    """The LIST answer for `req`: one Entry per name, INBOX first, then by name."""
    existing = {f.name: f for f in folders}
    subs = set(subscribed)
    sel, ret = req.selection, req.returns
    pats = [canonical_pattern(req.reference, p, separator) for p in req.patterns if p]

    def matches(name: str) -> bool:
        return any(wildcard_match(p, name, separator) for p in pats)

    with_children: set[str] = set()       # names with at least one existing descendant
    for name in existing:
        with_children.update(_ancestors(name, separator))
    by_subscriptions = "SUBSCRIBED" in sel
    by_special = "SPECIAL-USE" in sel
    recursive = "RECURSIVEMATCH" in sel and by_subscriptions
    sub_descendants: dict[str, list[str]] = {}
    if recursive:
        for s in subs:
            for a in _ancestors(s, separator):
                sub_descendants.setdefault(a, []).append(s)

    candidates = set(existing)
    if by_subscriptions:
        candidates |= subs
        if recursive:
            candidates |= set(sub_descendants)
    elif not by_special:
        candidates |= with_children       # missing parents of existing folders

    show_children = not req.extended or "CHILDREN" in ret
    show_special = not req.extended or "SPECIAL-USE" in ret or by_special
    show_subscribed = "SUBSCRIBED" in ret or by_subscriptions
    out: list[Entry] = []
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        if not matches(name):
            continue
        folder = existing.get(name)
        if by_subscriptions:
            meets = name in subs and (not by_special or bool(folder and folder.special_use))
        elif by_special:
            meets = bool(folder and folder.special_use)
        else:
            meets = folder is not None or name in with_children
        childinfo = False
        if recursive:
            below = sub_descendants.get(name, [])
            childinfo = bool(below) if meets else any(not matches(d) for d in below)
        if not meets and not childinfo:
            continue
        attrs: list[str] = []
        if show_subscribed and name in subs:
            attrs.append("\\Subscribed")
        if folder is None:
            attrs.append("\\NonExistent" if req.extended else "\\Noselect")
        if show_children:
            attrs.append("\\HasChildren" if name in with_children else "\\HasNoChildren")
        if show_special and folder is not None and folder.special_use:
            attrs.append(folder.special_use)
        out.append(Entry(name, tuple(attrs), childinfo, folder is not None and meets))
    return out
