"""The pure rules: which store events are a user's judgement, and which label they ask for."""

from __future__ import annotations

import pytest

from mailsift.feedback.rules import LearnAction, action_for
from mailsift.store.events import Event

USER = "u@example.test"


def ev(**kw: object) -> Event:
    base: dict[str, object] = dict(user=USER, kind="new", folder="Junk", special_use="\\Junk", uid=7, via="move",
                                   source_folder="INBOX", source_special_use=None, source_uid=3)
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


INBOX = dict(folder="INBOX", special_use=None)
FROM_JUNK = dict(source_folder="Junk", source_special_use="\\Junk")


@pytest.mark.parametrize("event,label", [
    # into Junk by the user: spam
    (ev(via="move"), "spam"),
    (ev(via="copy"), "spam"),                                   # COPY (+ EXPUNGE), clients without MOVE
    (ev(via="append", source_folder=None, source_uid=None), "spam"),
    (ev(via="move", source_folder="Trash", source_special_use="\\Trash"), "spam"),
    (ev(via="move", folder="Spam", special_use="\\Junk"), "spam"),   # any folder with the \Junk use
    # into Junk by anything else: never
    (ev(via="deliver", source_folder=None, source_uid=None), None),  # LMTP: the filter's own verdict
    (ev(via="sync", source_folder=None, source_uid=None), None),     # another program's file
    # Junk to Junk: no news
    (ev(via="move", **FROM_JUNK, folder="Spam", special_use="\\Junk"), None),
    # out of Junk: ham, except into Trash
    (ev(via="move", **FROM_JUNK, **INBOX), "ham"),
    (ev(via="copy", **FROM_JUNK, **INBOX), "ham"),
    (ev(via="move", **FROM_JUNK, folder="Archive.2026", special_use=None), "ham"),
    (ev(via="move", **FROM_JUNK, folder="Trash", special_use="\\Trash"), None),
    (ev(via="copy", **FROM_JUNK, folder="Trash", special_use="\\Trash"), None),
    # moves between ordinary folders say nothing
    (ev(via="move", **INBOX, source_folder="Archive", source_special_use=None), None),
    (ev(via="move", folder="Trash", special_use="\\Trash"), None),
    (ev(via="deliver", **INBOX, source_folder=None, source_uid=None), None),
    # keywords set by STORE
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"$Junk"})), "spam"),
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"Junk", "\\Seen"})), "spam"),
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"$junk"})), "spam"),
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"$NonJunk"})), "ham"),
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"NonJunk"})), "ham"),
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"$Junk", "$NonJunk"})), None),  # contradictory
    (ev(kind="flags", **INBOX, via="store", added=frozenset({"\\Seen"}), flags=frozenset({"$Junk", "\\Seen"})),
     None),                                                                        # $Junk was there already
    (ev(kind="flags", **INBOX, via="store", removed=frozenset({"$Junk"})), None),  # removing is no verdict
    (ev(kind="flags", **INBOX, via="sync", added=frozenset({"$Junk"})), None),     # not the user through us
    # APPEND carrying a keyword into an ordinary folder: the keyword's label
    (ev(via="append", **INBOX, source_folder=None, source_uid=None, flags=frozenset({"$Junk"})), "spam"),
    (ev(via="append", **INBOX, source_folder=None, source_uid=None, flags=frozenset({"$NonJunk"})), "ham"),
    (ev(via="append", **INBOX, source_folder=None, source_uid=None, flags=frozenset({"\\Seen"})), None),
    (ev(via="append", source_folder=None, source_uid=None, flags=frozenset({"$NonJunk"})), "spam"),  # folder wins
    # other kinds
    (ev(kind="expunge", via="expunge"), None),
    (ev(kind="expunge", via="move"), None),
    (ev(kind="folder-created", uid=None, via="create"), None),
    (ev(uid=None), None),
])
def test_rules(event: Event, label: str | None) -> None:
    action = action_for(event)
    assert (action.label if action else None) == label
    if action is not None:
        assert action == LearnAction(USER, event.folder, 7, action.label, action.reason)
        assert action.reason
