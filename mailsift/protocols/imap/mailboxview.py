"""A session's view of its selected folder: sequence numbers, flags, \\Recent, and the changes
other sessions (or LMTP, or outside programs) made since the client last heard.

The store is the truth; the view is what this client has been told. `apply(infos)` compares a
fresh listing with the view and returns the untagged responses that bring the client up to date:
EXPUNGE (only when `allow_expunge`, else the message stays as a "ghost" until it may be reported,
RFC 3501 7.4.1), EXISTS/RECENT for new messages, FETCH (FLAGS) for flags changed elsewhere.

Keywords: the view remembers which keywords the client was told of (the FLAGS and
PERMANENTFLAGS of SELECT, and any sent since). A keyword that reaches the view unannounced
(another session's STORE or APPEND, in this process or another, or this session's own STORE)
is queued; `keyword_news()` returns the new `* FLAGS` and `* OK [PERMANENTFLAGS]` lines, and
`apply()` puts them first, so no FETCH names a keyword before the client has heard of it
(as Dovecot does; RFC 3501 7.2.6).
Pure: no I/O.
"""

from __future__ import annotations

import bisect
import operator
from dataclasses import dataclass, field
from typing import Any, Iterable

from mailsift.protocols.imap.fetch import flag_atoms
from mailsift.protocols.imap.parser import SequenceSet


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
DEFAULT_KEYWORDS = ("$Junk", "$NonJunk", "Junk", "NonJunk", "$Forwarded")  # always announced


_uid_of = operator.attrgetter("uid")
_flags_of = operator.attrgetter("flags")


class BadSequence(ValueError):
    """A message sequence number beyond the mailbox (answer BAD)."""


@dataclass
class MessageState:
    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int
    save_date: float | None = None


@dataclass
class MailboxView:
    folder: str
    readonly: bool
    uidvalidity: int
    uids: list[int] = field(default_factory=list)
    state: dict[int, Any] = field(default_factory=dict)  # MessageInfo or MessageState
    recent: set[int] = field(default_factory=set)
    ghosts: set[int] = field(default_factory=set)
    condstore: bool = False
    dirty: bool = False
    qresync: bool = False  # report expunges as `* VANISHED uids` (RFC 7162 3.2.10)
    stamp: Any = None      # the folder's stamp the view was last listed at (store_api.Stamp)
    rev2: bool = False     # IMAP4rev2 (rev2.py): no \Recent, no `* n RECENT`
    announced: dict[str, None] = field(default_factory=dict)  # keywords told, in the order told
    unannounced: set[str] = field(default_factory=set)         # keywords in the view, not yet told

    # -- loading ------------------------------------------------------------------------------
    def load(self, infos: Iterable[Any]) -> None:
        """From the store's listing (MessageInfo: uid, flags, internal_date, size, modseq); the
        objects are kept as they are (a 100,000-message SELECT makes no copies)."""
        infos = infos if isinstance(infos, list) else list(infos)
        self.uids = list(map(_uid_of, infos))  # perf: map() over attrgetter, not a comprehension
        self.state = dict(zip(self.uids, infos))

    def recent_above(self, floor: int) -> set[int]:
        """The view's UIDs above `floor` (its \\Recent claim): found by bisection, not a walk
        over every UID (perf: a SELECT of a 100,000-message folder with nothing new)."""
        return set(self.uids[bisect.bisect_right(self.uids, floor):])

    def update(self, uid: int, flags: frozenset[str], modseq: int) -> None:
        st = self.state.get(uid)
        if st is not None:
            self.state[uid] = MessageState(uid, flags, st.internal_date, st.size, modseq, st.save_date)
            self._note_keywords(flags)

    def advance(self, before: Any, after: Any, bumps: int) -> None:
        """After this session's own change, already applied to the view: the folder's stamp was
        `before` just ahead of it and `after` just behind it (taken with the mailbox lock held),
        and the change raised HIGHESTMODSEQ by `bumps`. When the view was current at `before`
        and nothing but that change happened, the view is current at `after`: the next command
        needs no fresh listing (perf: a STORE or EXPUNGE cost the next command a thread hop)."""
        if before == self.stamp and after == (before[0], before[1] + bumps, before[2]):
            self.stamp = after

    # -- keywords the client was told of ------------------------------------------------------
    def _note_keywords(self, flags: Iterable[str]) -> None:
        announced = self.announced
        for f in flags:
            if f not in announced and f[:1] != "\\":
                self.unannounced.add(f)

    def flag_lines(self) -> list[bytes]:
        """Every keyword in the view (and the defaults) announced: the untagged FLAGS and
        PERMANENTFLAGS of SELECT/EXAMINE, sent again whenever a new keyword appears."""
        if not self.announced:
            for k in DEFAULT_KEYWORDS:
                self.announced[k] = None
            for k in self.keywords():
                self.announced.setdefault(k, None)
        for k in sorted(self.unannounced):
            self.announced.setdefault(k, None)
        self.unannounced.clear()
        flags = " ".join((*SYSTEM_FLAGS, *self.announced)).encode()
        perm = b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n" if self.readonly else \
            b"* OK [PERMANENTFLAGS (%s \\*)] Flags permitted\r\n" % flags
        return [b"* FLAGS (%s)\r\n" % flags, perm]

    def keyword_news(self) -> list[bytes]:
        """The FLAGS and PERMANENTFLAGS lines to send before any response that carries a keyword
        the client has not been told of; [] when there is none."""
        return self.flag_lines() if self.unannounced else []

    @property
    def exists(self) -> int:
        return len(self.uids)

    @property
    def max_uid(self) -> int:
        return self.uids[-1] if self.uids else 0

    def seq_of(self, uid: int) -> int:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        raise KeyError(uid)

    def first_unseen(self) -> int | None:
        for i, uid in enumerate(self.uids):
            if "\\Seen" not in self.state[uid].flags:
                return i + 1
        return None

    def keywords(self) -> list[str]:
        seen: set[str] = set()
        # perf: a folder has few distinct flag sets (frozensets keep their hash): look at each once
        for flags in set(map(_flags_of, self.state.values())):
            seen.update(f for f in flags if f[:1] != "\\")
        return sorted(seen)

    # -- addressing ----------------------------------------------------------------------------
    def resolve(self, seqset: SequenceSet, by_uid: bool) -> list[tuple[int, int]]:
        """[(seq, uid)] the set names, ascending. Sequence numbers beyond the mailbox raise
        BadSequence; UIDs that do not exist are skipped (RFC 3501 6.4.8)."""
        uids = self.uids
        out: list[tuple[int, int]] = []
        for i, j in self.resolve_spans(seqset, by_uid):
            out += zip(range(i + 1, j + 1), uids[i:j])  # perf: no bytecode per message
        return out

    def resolve_spans(self, seqset: SequenceSet, by_uid: bool) -> list[tuple[int, int]]:
        """What resolve() names as spans of positions in `uids` ([i, j): sequence numbers
        i+1..j), ascending and disjoint, without a tuple per message (perf: FETCH (FLAGS) of a
        whole big folder). The same errors as resolve()."""
        uids = self.uids
        if by_uid:
            if not uids:
                return []
            out = []
            for lo, hi in seqset.resolve(self.max_uid):  # sorted, disjoint
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                if i < j:
                    out.append((i, j))
            return out
        n = len(uids)
        if n == 0:
            raise BadSequence("no messages")
        spans = seqset.resolve(n)  # sorted, disjoint: nothing is expanded beyond the mailbox
        if spans[-1][1] > n or spans[0][0] < 1:
            raise BadSequence("message sequence number out of range")
        return [(lo - 1, hi) for lo, hi in spans]

    # -- changes -------------------------------------------------------------------------------
    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Expunge these UIDs from the view; the `* n EXPUNGE` lines, in order."""
        state = self.state
        doomed = {u for u in uids if u in state}
        if not doomed:
            return []
        out = []
        if len(doomed) * 16 < len(self.uids):  # a few (perf: an EXPUNGE of one walked them all)
            uids = self.uids
            for uid in sorted(doomed):
                i = bisect.bisect_left(uids, uid)
                out.append(b"* %d EXPUNGE\r\n" % (i + 1))
                del uids[i]
                state.pop(uid, None)
                self.recent.discard(uid)
                self.ghosts.discard(uid)
            return out
        keep = []
        removed = 0
        for i, uid in enumerate(self.uids):
            if uid in doomed:
                out.append(b"* %d EXPUNGE\r\n" % (i + 1 - removed))
                removed += 1
                self.state.pop(uid, None)
                self.recent.discard(uid)
                self.ghosts.discard(uid)
            else:
                keep.append(uid)
        self.uids = keep
        if self.qresync:
            return [b"* VANISHED " + _uid_set(sorted(doomed)).encode() + b"\r\n"]
        return out

    def apply(self, infos: Iterable[Any], allow_expunge: bool, recent_floor: int | None = None,
              with_uid: bool = True) -> list[bytes]:
        """Bring the view up to date with a fresh listing; the untagged responses to send. New
        UIDs above `recent_floor` (this session's \\Recent claim, Mailbox.claim_recent) are recent."""
        # One walk over the view and the listing, both in ascending UID order (perf: a dict of
        # the listing and three passes over it were a fifth of a refresh's CPU). A listing from
        # the store's cache holds the very objects the view holds: unchanged at a glance.
        infos = infos if isinstance(infos, list) else list(infos)
        state, condstore = self.state, self.condstore
        top = self.max_uid
        gone: list[int] = []
        changed: list[Any] = []
        j, n = 0, len(infos)
        for uid in self.uids:
            while j < n and infos[j].uid < uid:
                j += 1
            if j < n and infos[j].uid == uid:
                m = infos[j]
                j += 1
                st = state[uid]
                if m is not st and (m.flags != st.flags or (condstore and m.modseq != st.modseq)):
                    changed.append(m)
            else:
                gone.append(uid)
        new = [m for m in infos[j:] if m.uid > top]  # UIDs only grow
        out: list[bytes] = []
        if gone:
            if allow_expunge:
                out += self.remove(gone)
            else:
                self.ghosts.update(gone)
        # flags changed elsewhere
        for m in changed:
            uid = m.uid
            self.update(uid, m.flags, m.modseq)  # (notes new keywords)
            st = state[uid]
            items = b""
            if with_uid:
                items += b"UID %d " % uid
            items += b"FLAGS " + flag_atoms(st.flags, uid in self.recent)
            if condstore:
                items += b" MODSEQ (%d)" % st.modseq
            out.append(b"* %d FETCH (%s)\r\n" % (self.seq_of(uid), items))
        # new messages
        if new:
            for m in new:
                self.uids.append(m.uid)
                state[m.uid] = m
                if m.flags:
                    self._note_keywords(m.flags)
            if recent_floor is not None and not self.rev2:
                self.recent.update(m.uid for m in new if m.uid > recent_floor)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if not self.rev2:
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        self.dirty = False
        if self.unannounced:
            out[:0] = self.keyword_news()
        return out


def _uid_set(uids: list[int]) -> str:
    out: list[str] = []
    i = 0
    while i < len(uids):
        j = i
        while j + 1 < len(uids) and uids[j + 1] == uids[j] + 1:
            j += 1
        out.append(str(uids[i]) if i == j else f"{uids[i]}:{uids[j]}")
        i = j + 1
    return ",".join(out)
