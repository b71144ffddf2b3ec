"""The IMAP session's compound store calls, each made in one worker-thread hop (a hop costs more
than the calls: a SELECT is a folder lookup, a listing and a \\Recent claim in one). The
*_nowait ones run on the event loop's thread when that means no wait (Mailbox._nowait: the
mailbox is free, the folder in sync, the work small) and answer None otherwise; the session
then makes the hop: `storecalls.x_nowait(...) or await self.call(storecalls.x, ...)`.

Only store_api.Mailbox calls here; message bytes are read through loader.py.
"""

from __future__ import annotations

from typing import Any

from mailsift.store import api as store_api
from mailsift.store.listing import Stamp, keywords_of

Listing = tuple[list[Any], int | None, Stamp]     # list_and_claim: (infos, \\Recent floor, stamp)
Selected = tuple[str, int, int, bool]           # (folder, UIDVALIDITY, highest UID seen, read-only)


def select_data(box: store_api.Mailbox, name: str, readonly: bool) -> tuple[Any, list[Any], int | None, Any]:
    """SELECT/EXAMINE in one worker-thread hop: folder info, listing, \\Recent floor, stamp."""
    return box.select(name, readonly)


def select_nowait(box: store_api.Mailbox, name: str, readonly: bool) -> tuple[Any, list[Any], int | None, Any] | None:
    """select_data without a hop, or None (then select_data in a worker thread)."""
    return box.select_nowait(name, readonly)


def append(box: store_api.Mailbox, name: str, message: bytes, flags: Any, when: float | None,
           selected: Selected | None = None) -> tuple[Any, int | None, Listing | None] | None:
    """APPEND in one worker-thread hop: None when the folder does not exist, (None, None, None)
    for an empty message, else (the new message, the folder's UIDVALIDITY, the listing). The
    listing (list_and_claim's answer) only when the message went into the selected folder
    (`selected`: its name, UIDVALIDITY, the view's highest UID, read-only): the refresh that
    tells the client of it needs no hop of its own (perf); None when the folder was replaced
    meanwhile (the refresh finds out)."""
    folder = box.find_folder(name)
    if folder is None:
        return None
    if not message:
        return None, None, None
    view = selected[1:] if selected is not None and selected[0] == folder else None
    return box.append_listed(folder, message, flags, when, view)


def store_flags(box: store_api.Mailbox, folder: str, uids: list[int], flags: Any, mode: Any,
                unchanged_since: int | None) -> tuple[list[Any], Stamp, Stamp]:
    """STORE in one worker-thread hop: the messages changed, and the folder's stamps just
    before and after, with the mailbox lock held throughout (MailboxView.advance: whether the
    change was the only one since the client's view)."""
    return box.store_flags_stamped(folder, uids, flags, mode, unchanged_since)


def store_flags_nowait(box: store_api.Mailbox, folder: str, uids: list[int], flags: Any, mode: Any,
                       unchanged_since: int | None) -> tuple[list[Any], Stamp, Stamp] | None:
    """store_flags without a hop, or None (then store_flags in a worker thread)."""
    return box.store_flags_nowait(folder, uids, flags, mode, unchanged_since)


def expunge(box: store_api.Mailbox, folder: str, uids: list[int] | None) -> tuple[list[int], Stamp, Stamp]:
    """EXPUNGE (UID EXPUNGE with `uids`) in one worker-thread hop: the UIDs expunged, and the
    folder's stamps before and after, as store_flags."""
    return box.expunge_stamped(folder, uids)


def expunge_nowait(box: store_api.Mailbox, folder: str, uids: list[int] | None) -> tuple[list[int], Stamp, Stamp] | None:
    """expunge without a hop, or None (then expunge in a worker thread)."""
    return box.expunge_nowait(folder, uids)


def folder_keywords(box: store_api.Mailbox, folder: str) -> set[str]:
    """The distinct keywords of a folder (worker thread)."""
    return keywords_of(box.list(folder))


def list_and_claim(box: store_api.Mailbox, folder: str, uidvalidity: int, known_max: int,
                   readonly: bool) -> Listing:
    """One worker-thread hop: the folder's listing, when it has UIDs above `known_max` the
    \\Recent floor claimed for them (None when nothing is new), and the folder's stamp."""
    return box.list_and_claim(folder, uidvalidity, known_max, readonly)
