"""Implicit feedback: what users keep confirms how the filter filed it.

The store sees what people do with every message. Mail filed by LMTP delivery (or a client's
APPEND) is remembered as pending (state.py) with the label its folder implies: INBOX or a user
folder -> ham, Junk -> spam. Then what the user does decides:

    what happens to a pending message                        result
    ham: read (\\Seen) and still there `confirm_after` later  learned ham ("kept ...")
    ham: never read                                          nothing (forgotten after UNREAD_DAYS)
    ham: \\Answered set, or a reply to it filed into Sent       learned ham at once
         (APPEND or delivery, matched by In-Reply-To/References)
    ham: moved or copied into a user folder                  learned ham at once ("filed ...")
    spam: still in Junk `confirm_after` later (read or not)  learned spam ("left in Junk ...")
    spam: expunged from Junk, or moved to Trash, unread      learned spam at once
    spam: \\Answered set in Junk (a reply to it)              nothing
    moved into or out of Junk, $Junk/$NonJunk set            nothing here: learn-on-move (rules.py)
                                                             learns it, once
    expunged otherwise, moved to Trash, Sent, Drafts,        nothing (deleting says nothing
    changed by another program (via "sync")                  about spam)

Unread ham is never confirmed: mail nobody opened says nothing about it (people leave spam the
filter missed unread in INBOX rather than file it). Implicit judgements are weaker than said
ones: one never overrides what the learn record holds (a message learned from a move, by
`mailsift learn` or by an earlier confirmation is skipped), while a later contrary move still
wins over it (the learn record moves the message to the other label). A user opted out
(`mailsift user set USER --no-implicit-feedback`) gets no pending entries, and theirs are
dropped at the next sweep.

`wants` (the store's thread: pure, no I/O) passes on only the changes that can matter: filings,
moves, copies, expunges other than a move's, folder renames and deletions, and flag changes
that set \\Answered or a verdict keyword or set or clear \\Seen (not \\Deleted, \\Flagged,
other keywords). `on_events` runs in the learner's tracker thread, in the order the store
published the changes: small SQLite writes, and for mail delivered into Junk one read of the
message (its bytes are kept with the pending entry, so that spam deleted unread can still be
learned). The learner hands it what arrived in the last TRACK_DELAY (learner.py), recorded in one
transaction (perf: one commit per change, and a thread wake-up per change, cost the server's main
process several times what the rules do). `sweep` (the learner's sweeper thread) returns the
LearnActions that are due; the learner removes their rows once they are learned, so a restart in
between hands them out again.

What a crash (kill -9, out of memory, power loss) loses is what was not committed yet: the last
TRACK_DELAY of changes and any still queued behind them (a stop records them all first). A
restart does not re-derive them from the store. Lost changes mean less learning, or a message
learned with the label its filing gave it where the lost change would have withdrawn it: a filing
lost is never tracked; a \\Seen lost leaves ham unread (forgotten after UNREAD_DAYS); an
\\Answered or a move into a user folder lost leaves ham to be confirmed by being read and kept; an
expunge or a move of ham lost leaves an entry whose message is gone, which the learner finds
missing and skips. Spam filed into Junk keeps its bytes, so if its expunge or its move out of
Junk is lost, it is learned as spam `confirm_after` later; after a move out of Junk only if the
learn-on-move of it (the learner's own queue, learned within `save_interval`) was lost too, as
implicit judgements never override the learn record.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable

from mailsift.feedback.clock import Clock
from mailsift.feedback.rules import HAM_KEYWORDS, JUNK, SPAM_KEYWORDS, TRASH, LearnAction
from mailsift.feedback.state import Pending, State

log = logging.getLogger("mailsift.feedback")

SEEN = "\\Seen"
ANSWERED = "\\Answered"
SENT = "\\Sent"
# Folders whose mail counts as kept: no special use, or \Archive. Quarantine (virus mail) is not.
KEPT_SPECIAL_USES = frozenset({None, "\\Archive"})
NOT_KEPT_FOLDERS = frozenset({"Quarantine"})
# Unread ham is forgotten this long after it was filed (or 2 x confirm_after, if longer).
UNREAD_DAYS = 30
# At most this many pending messages per user (the oldest go): bounds the state file.
MAX_PENDING_PER_USER = 20000
MAX_SWEEP = 1000
# Mail delivered into Junk is kept with its pending entry up to this size (the tokenizer reads
# no more than the first 256 KB; bigger spam deleted unread is not learned).
MAX_KEPT_BYTES = 256 * 1024
# A reply filed into Sent is matched against this many of the user's newest unconfirmed ham.
MAX_REPLY_CANDIDATES = 2000
_VERDICT_KEYWORDS = SPAM_KEYWORDS | HAM_KEYWORDS
_HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
_REPLY_HEADERS_RE = re.compile(rb"(?im)^(?:in-reply-to|references)[ \t]*:(.*(?:\r?\n[ \t].*)*)")
_MESSAGE_ID_RE = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")
_ID_RE = re.compile(rb"<[^<>\s]{1,500}>")


def _head(raw: bytes) -> bytes:
    m = _HEADER_END_RE.search(raw, 0, 65536)
    return raw[: m.start() + 1] if m else raw[:65536]


def replied_to(raw: bytes) -> set[str]:
    """The Message-IDs a message answers (In-Reply-To and References)."""
    out: set[str] = set()
    for m in _REPLY_HEADERS_RE.finditer(_head(raw)):
        out.update(i.decode("ascii", "replace") for i in _ID_RE.findall(m.group(1)))
    return out


def message_id(raw: bytes) -> str:
    """The message's Message-ID (<...>), or "" when it has none."""
    m = _MESSAGE_ID_RE.search(_head(raw))
    ids = _ID_RE.findall(m.group(1)) if m else []
    return ids[0].decode("ascii", "replace") if ids else ""


def _kept(special_use: str | None, folder: str) -> bool:
    return special_use in KEPT_SPECIAL_USES and folder not in NOT_KEPT_FOLDERS


def _duration(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds)}s"


class ImplicitTracker:
    def __init__(self, store: Any, state: State, clock: Clock, confirm_after: float,
                 opted_out: Callable[[str], bool] = lambda user: False) -> None:
        self.store = store
        self.state = state
        self.clock = clock
        self.confirm_after = confirm_after
        self._opted_out = opted_out
        self._optout_cache: dict[str, tuple[float, bool]] = {}
        self.wake: Callable[[], None] = lambda: None  # set by the learner: sweep soon

    def opted_out(self, user: str) -> bool:
        """users.db's opt-out, cached for 10 s (a change reaches a running server within seconds)."""
        now = time.monotonic()
        hit = self._optout_cache.get(user)
        if hit is not None and now - hit[0] < 10:
            return hit[1]
        try:
            out = bool(self._opted_out(user))
        except Exception:  # noqa: BLE001 - an unreadable users.db: learn nothing implicit for them
            log.exception("feedback: cannot read the implicit-feedback setting of %s", user)
            out = True
        self._optout_cache[user] = (now, out)
        return out

    # -- the store's thread -----------------------------------------------------------------------
    @staticmethod
    def wants(ev: Any) -> bool:
        """Can `ev` change what is tracked? (Cheap and pure: called for every change.)"""
        kind = ev.kind
        if kind == "flags":
            if ev.uid is None or ev.via not in ("store", "sync"):
                return False
            added = ev.added
            if SEEN in added or ANSWERED in added or SEEN in ev.removed:
                return True
            return any(f.lower() in _VERDICT_KEYWORDS for f in added)
        if kind == "new":
            return ev.uid is not None and ev.via in ("deliver", "append", "move", "copy")
        if kind == "expunge":
            return ev.uid is not None and ev.via != "move"
        return kind in ("folder-renamed", "folder-deleted")

    # -- the tracker thread ---------------------------------------------------------------------
    def on_events(self, events: list[Any]) -> None:
        """Record a batch of changes in one transaction. A change whose handling fails is logged
        and skipped; the others are recorded."""
        with self.state.batch():
            for ev in events:
                try:
                    self.on_event(ev)
                except Exception:  # noqa: BLE001 - never take the server down
                    log.exception("feedback: tracking %s in %s failed", getattr(ev, "kind", "?"),
                                  getattr(ev, "folder", "?"))

    def on_event(self, ev: Any) -> None:
        if ev.uid is None and ev.kind not in ("folder-renamed", "folder-deleted"):
            return
        if not (ev.kind == "new" and ev.via in ("deliver", "append")) and not self.state.ready():
            return  # nothing pending yet: only filing creates the state file
        if ev.kind == "new":
            self._on_new(ev)
        elif ev.kind == "flags":
            self._on_flags(ev)
        elif ev.kind == "expunge":
            self._on_expunge(ev)
        elif ev.kind == "folder-renamed" and ev.old_name:
            self.state.rename_folder(ev.user, ev.old_name, ev.folder)
        elif ev.kind == "folder-deleted":
            self.state.delete_folder(ev.user, ev.folder)

    def _on_new(self, ev: Any) -> None:
        if ev.via in ("deliver", "append"):
            if ev.special_use == SENT:
                self._reply(ev)
            else:
                self._file(ev)
            return
        if ev.via not in ("move", "copy") or ev.source_uid is None:
            return
        p = self.state.get_pending(ev.user, ev.source_folder, ev.source_uid)
        if p is None:
            return
        into_junk, into_trash = ev.special_use == JUNK, ev.special_use == TRASH
        if ev.via == "move" and ev.folder == ev.source_folder:
            self.state.relocate(p.id, ev.folder, ev.uid)  # a move within one folder files nothing
            return
        if p.label == "ham":
            if _kept(ev.special_use, ev.folder):
                self.state.relocate(p.id, ev.folder, ev.uid)
                self.state.confirm(p.id, f"filed into {ev.folder}")
                self.wake()
            elif ev.via == "move" or into_junk:
                self.state.delete_pending([p.id])  # into Junk: learn-on-move's; Trash, Sent: no verdict
            return
        # spam filed into Junk
        if into_junk:
            if ev.via == "move":
                self.state.relocate(p.id, ev.folder, ev.uid)  # within Junk: still left there
        elif into_trash and not p.seen:
            if ev.via == "move":
                self.state.relocate(p.id, ev.folder, ev.uid)
                self.state.confirm(p.id, "moved from Junk to Trash unread")
                self.wake()
        else:
            self.state.delete_pending([p.id])  # out of Junk: learn-on-move learns ham

    def _file(self, ev: Any) -> None:
        if ev.special_use == JUNK:
            if ev.via != "deliver":
                return  # an APPEND into Junk is learn-on-move's
            label = "spam"
        elif _kept(ev.special_use, ev.folder):
            low = {f.lower() for f in ev.flags}
            if low & (SPAM_KEYWORDS | HAM_KEYWORDS):
                return  # appended with a verdict: learn-on-move's
            label = "ham"
        else:
            return
        if self.opted_out(ev.user):
            return
        raw = None
        if label == "spam":  # kept, so spam deleted unread can still be learned
            raw = self._read(ev.user, ev.folder, ev.uid)
            if raw is not None and len(raw) > MAX_KEPT_BYTES:
                raw = None
        self.state.add_pending(ev.user, ev.folder, ev.uid, label, self.clock(), SEEN in ev.flags, raw)

    def _reply(self, ev: Any) -> None:
        """A message filed into Sent: the pending ham it answers is confirmed. Message-IDs of
        pending mail are read once, when the user first files a reply."""
        raw = self._read(ev.user, ev.folder, ev.uid)
        ids = replied_to(raw) if raw is not None else set()
        if not ids:
            return
        for pid, folder, uid, mid in self.state.unconfirmed_ham(ev.user, MAX_REPLY_CANDIDATES):
            if mid is None:
                pending_raw = self._read(ev.user, folder, uid)
                mid = message_id(pending_raw) if pending_raw is not None else ""
                self.state.set_msgid(pid, mid)
            if mid and mid in ids:
                self.state.confirm(pid, "replied")
                self.wake()

    def _read(self, user: str, folder: str, uid: int) -> bytes | None:
        from mailsift.store.api import StoreError

        try:
            return self.store.mailbox(user, create=False).read(folder, uid, crlf=False)
        except (StoreError, OSError):
            return None

    def _on_flags(self, ev: Any) -> None:
        if ev.via not in ("store", "sync"):
            return
        p = self.state.get_pending(ev.user, ev.folder, ev.uid)
        if p is None:
            return
        low = {f.lower() for f in ev.added}
        if low & (SPAM_KEYWORDS | HAM_KEYWORDS):
            self.state.delete_pending([p.id])  # a said verdict: learn-on-move's
            return
        if ANSWERED in ev.added:
            if p.label == "ham":
                self.state.confirm(p.id, "answered")
                self.wake()
            else:
                self.state.delete_pending([p.id])  # replied to mail in Junk: not confirmed spam
            return
        if SEEN in ev.added or SEEN in ev.removed:
            self.state.set_seen(p.id, SEEN in ev.flags)

    def _on_expunge(self, ev: Any) -> None:
        if ev.via == "move":
            return  # the "new" event in the target folder moved or dropped it
        p = self.state.get_pending(ev.user, ev.folder, ev.uid)
        if p is None:
            return
        if ev.via == "expunge" and p.label == "spam" and ev.special_use == JUNK and not p.seen \
                and self.state.pending_raw(p.id) is not None:
            self.state.confirm(p.id, "expunged from Junk unread")
            self.wake()
        else:
            self.state.delete_pending([p.id])

    # -- the sweeper ----------------------------------------------------------------------------------
    def sweep(self, limit: int = MAX_SWEEP) -> list[LearnAction]:
        """The confirmations due now, marked as handed out (the learner deletes them once done)."""
        now = self.clock()
        self.state.expire(now - max(UNREAD_DAYS * 86400.0, 2 * self.confirm_after))
        self.state.trim_users(MAX_PENDING_PER_USER)
        self.state.vacuum()
        actions: list[LearnAction] = []
        dropped: list[int] = []
        for p in self.state.due(now, self.confirm_after, limit):
            if self.opted_out(p.user):
                dropped.append(p.id)
                continue
            actions.append(LearnAction(p.user, p.folder, p.uid, p.label, self._reason(p), implicit=True,
                                       pending_id=p.id))
        self.state.delete_pending(dropped)
        self.state.mark_emitted("pending", [a.pending_id for a in actions if a.pending_id is not None])
        return actions

    def _reason(self, p: Pending) -> str:
        if p.reason:
            return p.reason
        where = "Junk" if p.label == "spam" else p.folder
        return f"{'left' if p.label == 'spam' else 'kept'} in {where} {_duration(self.confirm_after)}"
