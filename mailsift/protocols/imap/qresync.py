"""QRESYNC (RFC 7162 section 3.2) on top of CONDSTORE: ENABLE QRESYNC, SELECT/EXAMINE
(QRESYNC (uidvalidity modseq [known-uids [seq-match]])), UID FETCH ... (CHANGEDSINCE n
VANISHED), and VANISHED instead of EXPUNGE once enabled (MailboxView.qresync).

Expunged UIDs come from the tombstones the index keeps (store/vanished.py); for a MODSEQ older
than the tombstones the answer is every gap below UIDNEXT, narrowed to the client's known UIDs
(RFC 7162 allows naming UIDs the client never had). The sequence match data is accepted and
not used: it only helps servers that cannot tell expunged UIDs.

The handlers take the session as their first argument, like its own cmd_* methods."""

from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Any

from mailsift.protocols.imap import fetch as fetchmod
from mailsift.protocols.imap.parser import SequenceSet

if TYPE_CHECKING:  # (no import at run time: session.py imports this module)
    from mailsift.protocols.imap.mailboxview import MailboxView
    from mailsift.protocols.imap.session import ImapSession

CAPABILITIES = ("QRESYNC",)


def uid_set(ranges: list[tuple[int, int]]) -> str:
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


def narrow(ranges: list[tuple[int, int]], wanted: SequenceSet | None, largest: int) -> list[tuple[int, int]]:
    """The parts of the ascending, disjoint `ranges` inside `wanted` (None: all), in one sweep
    over both, never expanding either."""
    if wanted is None:
        return ranges
    spans: list[tuple[int, int]] = []
    for lo, hi in sorted(wanted.resolve(largest)):
        if spans and lo <= spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], max(hi, spans[-1][1]))
        else:
            spans.append((lo, hi))
    out: list[tuple[int, int]] = []
    i = j = 0
    while i < len(ranges) and j < len(spans):
        a, b = ranges[i]
        lo, hi = spans[j]
        x, y = max(a, lo), min(b, hi)
        if x <= y:
            out.append((x, y))
        if b < hi:
            i += 1
        else:
            j += 1
    return out


async def enable(session: ImapSession) -> None:
    """ENABLE QRESYNC: CONDSTORE too (RFC 7162 3.2.3); tombstones from now on."""
    assert session.box is not None
    await session.call(session.box.track_expunges)
    session.qresync = session.condstore = True
    if session.sel is not None:
        session.sel.condstore = session.sel.qresync = True


async def after_select(session: ImapSession, view: MailboxView, params: tuple[Any, ...]) -> None:
    """VANISHED (EARLIER) and FETCH for what changed since the client's MODSEQ (3.2.5); with
    known UIDs, both only for those (as Dovecot answers)."""
    uidvalidity, modseq, known, _match = params
    if uidvalidity != view.uidvalidity:
        return  # the client's cache is void: it resynchronises in full
    assert session.box is not None
    gone = await session.call(session.box.expunged_since, view.folder, uidvalidity, modseq)
    gone = narrow(gone, known, max(view.max_uid, gone[-1][1] if gone else 0))
    if gone:
        session.untagged("VANISHED (EARLIER) " + uid_set(gone))
    out = []
    spans = narrow([(1, max(view.max_uid, 1))], known, view.max_uid) if known is not None else None
    starts = [lo for lo, _hi in spans] if spans is not None else []
    for seq, uid in enumerate(view.uids, 1):
        st = view.state[uid]
        if st.modseq > modseq and (spans is None or _inside(spans, starts, uid)):
            out.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n"
                       % (seq, uid, fetchmod.flag_atoms(st.flags, uid in view.recent), st.modseq))
    session.send(b"".join(out))


async def fetch_vanished(session: ImapSession, changedsince: int, wanted: SequenceSet) -> None:
    """UID FETCH ... (CHANGEDSINCE n VANISHED): the UIDs of the set expunged since n (3.2.6)."""
    sel = session.sel
    assert sel is not None and session.box is not None
    gone = await session.call(session.box.expunged_since, sel.folder, sel.uidvalidity, changedsince)
    gone = narrow(gone, wanted, max(sel.max_uid, gone[-1][1] if gone else 0))
    if gone:
        session.untagged("VANISHED (EARLIER) " + uid_set(gone))


def _inside(spans: list[tuple[int, int]], starts: list[int], uid: int) -> bool:
    """uid within one of the sorted, disjoint spans (binary search)."""
    i = bisect.bisect_right(starts, uid) - 1
    return i >= 0 and spans[i][0] <= uid <= spans[i][1]
