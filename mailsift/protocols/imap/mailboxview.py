"""A session's view of its selected folder: sequence numbers, flags, \\Recent, and the changes
other sessions (or LMTP, or outside programs) made since the client last heard.

The store is the truth; the view is what this client has been told. `apply(infos)` compares a
fresh listing with the view and returns the untagged responses that bring the client up to date:
EXPUNGE (only when `allow_expunge`, else the message stays as a "ghost" until it may be reported,
RFC 3501 7.4.1), EXISTS/RECENT for new messages, FETCH (FLAGS) for flags changed elsewhere.
Pure: no I/O.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Iterable

from mailsift.protocols.imap.fetch import flag_atoms
from mailsift.protocols.imap.parser import SequenceSet


class BadSequence(ValueError):
    """A message sequence number beyond the mailbox (answer BAD)."""


@dataclass
class MessageState:
    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int


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

    # -- loading ------------------------------------------------------------------------------
    def load(self, infos: Iterable[Any]) -> None:
        """From the store's listing (MessageInfo: uid, flags, internal_date, size, modseq); the
        objects are kept as they are (a 100,000-message SELECT makes no copies)."""
        infos = list(infos)
        self.uids = [m.uid for m in infos]
        self.state = dict(zip(self.uids, infos))

    def update(self, uid: int, flags: frozenset[str], modseq: int) -> None:
        st = self.state.get(uid)
        if st is not None:
            self.state[uid] = MessageState(uid, flags, st.internal_date, st.size, modseq)

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
        seen: dict[str, None] = {}
        for st in self.state.values():
            for f in st.flags:
                if not f.startswith("\\"):
                    seen.setdefault(f, None)
        return sorted(seen)

    # -- addressing ----------------------------------------------------------------------------
    def resolve(self, seqset: SequenceSet, by_uid: bool) -> list[tuple[int, int]]:
        """[(seq, uid)] the set names, ascending. Sequence numbers beyond the mailbox raise
        BadSequence; UIDs that do not exist are skipped (RFC 3501 6.4.8)."""
        n = len(self.uids)
        if by_uid:
            if not self.uids:
                return []
            uids = self.uids
            out = []
            for lo, hi in seqset.resolve(self.max_uid):  # sorted, disjoint
                i = bisect.bisect_left(uids, lo)
                j = bisect.bisect_right(uids, hi)
                out += [(k + 1, uids[k]) for k in range(i, j)]
            return out
        if n == 0:
            raise BadSequence("no messages")
        spans = seqset.resolve(n)  # sorted, disjoint: nothing is expanded beyond the mailbox
        if spans[-1][1] > n or spans[0][0] < 1:
            raise BadSequence("message sequence number out of range")
        uids = self.uids
        return [(s, uids[s - 1]) for lo, hi in spans for s in range(lo, hi + 1)]

    # -- changes -------------------------------------------------------------------------------
    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Expunge these UIDs from the view; the `* n EXPUNGE` lines, in order."""
        doomed = set(uids) & set(self.state)
        if not doomed:
            return []
        out = []
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
        return out

    def apply(self, infos: Iterable[Any], allow_expunge: bool, recent_floor: int | None = None,
              with_uid: bool = True) -> list[bytes]:
        """Bring the view up to date with a fresh listing; the untagged responses to send. New
        UIDs above `recent_floor` (this session's \\Recent claim, Mailbox.claim_recent) are recent."""
        fresh = {m.uid: m for m in infos}
        out: list[bytes] = []
        gone = [u for u in self.uids if u not in fresh]
        if gone:
            if allow_expunge:
                out += self.remove(gone)
            else:
                self.ghosts.update(gone)
        # flags changed elsewhere
        for uid in self.uids:
            m = fresh.get(uid)
            st = self.state[uid]
            if m is None:
                continue
            if m.flags != st.flags or (self.condstore and m.modseq != st.modseq):
                self.update(uid, m.flags, m.modseq)
                st = self.state[uid]
                items = b""
                if with_uid:
                    items += b"UID %d " % uid
                items += b"FLAGS " + flag_atoms(st.flags, uid in self.recent)
                if self.condstore:
                    items += b" MODSEQ (%d)" % st.modseq
                out.append(b"* %d FETCH (%s)\r\n" % (self.seq_of(uid), items))
        # new messages (UIDs only grow)
        top = self.max_uid
        new = sorted(u for u in fresh if u > top)
        if new:
            for uid in new:
                m = fresh[uid]
                self.uids.append(uid)
                self.state[uid] = m
            if recent_floor is not None:
                self.recent.update(u for u in new if u > recent_floor)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            out.append(b"* %d RECENT\r\n" % len(self.recent))
        self.dirty = False
        return out
