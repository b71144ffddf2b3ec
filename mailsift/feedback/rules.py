"""Which store changes are a user's judgement about spam: Event -> LearnAction (pure, no I/O).

What `via` means on a store Event (mailsift/store/api.py, events.py), and what we learn from it:

    via        made by                                          learned?
    deliver    LMTP delivery; into Junk it is the filter's      never (learning the filter's own
               own verdict                                      decision would be self-training)
    append     a client's APPEND (IMAP, mbsync uploading)       yes: the user put it there
    copy       a client's COPY (also half of COPY+EXPUNGE,      yes
               which is how clients without MOVE move)
    move       a client's MOVE                                  yes
    store      a client's STORE of flags/keywords               yes (keywords)
    sync       a change another program made in the Maildir     no: a file appearing in .Junk may be
               (mutt, procmail, Dovecot), seen on rescan        another filter's delivery, and a move
                                                                made outside arrives without its source
    expunge    EXPUNGE                                          no (deleting says nothing about spam)

The rules, for a message the user handled:
  - COPY, MOVE or APPEND into a `\\Junk` folder from anywhere that is not `\\Junk`: spam.
  - COPY or MOVE out of `\\Junk` into a folder that is neither `\\Junk` nor `\\Trash`: ham
    (throwing spam away is not a rescue).
  - The keyword `$Junk` (or `Junk`) added by STORE: spam; `$NonJunk` (or `NonJunk`): ham.
    Both added at once says nothing. Only additions count: removing `$Junk` alone is no verdict.
  - APPEND of a message carrying one of those keywords into a folder that is not `\\Junk`
    learns the keyword's label (a client uploading what the user marked offline).
Keywords are compared without regard to case (clients differ: Thunderbird writes "Junk",
Apple Mail "$Junk").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailsift.store.events import Event

Label = Literal["spam", "ham"]

JUNK = "\\Junk"
TRASH = "\\Trash"
SPAM_KEYWORDS = frozenset({"$junk", "junk"})
HAM_KEYWORDS = frozenset({"$nonjunk", "nonjunk"})
USER_FILING = frozenset({"copy", "move", "append"})
USER_FLAGS = frozenset({"store"})


@dataclass(frozen=True)
class LearnAction:
    """Learn message `uid` of `user`'s `folder` as `label`; `reason` says which rule fired.

    implicit: inferred from what the user kept (feedback/implicit.py), not said: it never
    overrides what the learn record already holds, and a said judgement about the same message in
    the same batch wins over it. pending_id / deferred_id: the row of the learner's state
    (feedback/state.py) this action comes from, removed once the action is learned."""

    user: str
    folder: str
    uid: int
    label: Label
    reason: str
    implicit: bool = False
    pending_id: int | None = None
    deferred_id: int | None = None


def _keyword_label(flags: frozenset[str]) -> Label | None:
    low = {f.lower() for f in flags}
    spam, ham = bool(low & SPAM_KEYWORDS), bool(low & HAM_KEYWORDS)
    if spam and not ham:
        return "spam"
    if ham and not spam:
        return "ham"
    return None


def action_for(ev: Event) -> LearnAction | None:
    """The learn action a store event asks for, or None."""
    if ev.uid is None:
        return None
    if ev.kind == "new":
        if ev.via not in USER_FILING:
            return None
        into_junk = ev.special_use == JUNK
        from_junk = ev.source_special_use == JUNK and ev.via in ("copy", "move")
        if into_junk and not from_junk:
            return LearnAction(ev.user, ev.folder, ev.uid, "spam", f"{ev.via} into Junk")
        if from_junk and not into_junk:
            if ev.special_use == TRASH:
                return None
            return LearnAction(ev.user, ev.folder, ev.uid, "ham", f"{ev.via} out of Junk")
        if ev.via == "append" and not into_junk:
            label = _keyword_label(ev.flags)
            if label is not None:
                return LearnAction(ev.user, ev.folder, ev.uid, label, f"append with {label} keyword")
        return None
    if ev.kind == "flags" and ev.via in USER_FLAGS:
        label = _keyword_label(ev.added)
        if label is not None:
            return LearnAction(ev.user, ev.folder, ev.uid, label, f"{label} keyword set")
    return None
