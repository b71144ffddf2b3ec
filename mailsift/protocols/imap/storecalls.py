"""The IMAP session's compound store calls, each made in one worker-thread hop (a hop costs more
than the calls: a SELECT is a folder lookup, a listing and a \\Recent claim in one).

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
    info = box.folder(name)
    infos, floor, stamp = list_and_claim(box, info.name, info.uidvalidity, 0, readonly)
    return info, infos, floor, stamp


def append(box: store_api.Mailbox, name: str, message: bytes, flags: Any, when: float | None,
           selected: Selected | None = None) -> tuple[Any, Any, Listing | None] | None:
    """APPEND in one worker-thread hop: None when the folder does not exist, (None, None, None)
    for an empty message, else (the new message, the folder's info, the listing). The listing
    (list_and_claim's answer) only when the message went into the selected folder
    (`selected`: its name, UIDVALIDITY, the view's highest UID, read-only): the refresh that
    tells the client of it needs no hop of its own (perf); None when the folder was replaced
    meanwhile (the refresh finds out)."""
    folder = box.find_folder(name)
    if folder is None:
        return None
    if not message:
        return None, None, None
    info = box.append(folder, message, flags, when)
    finfo = box.folder(folder)
    listing = None
    if selected is not None and selected[0] == folder:
        try:
            listing = list_and_claim(box, folder, selected[1], selected[2], selected[3])
        except store_api.NoSuchFolder:
            pass
    return info, finfo, listing


def store_flags(box: store_api.Mailbox, folder: str, uids: list[int], flags: Any, mode: Any,
                unchanged_since: int | None) -> tuple[list[Any], Stamp, Stamp]:
    """STORE in one worker-thread hop: the messages changed, and the folder's stamps just
    before and after, with the mailbox lock held throughout (MailboxView.advance: whether the
    change was the only one since the client's view)."""
    with box.exclusive():
        before = box.stamp(folder)
        changed = box.store_flags(folder, uids, flags, mode, unchanged_since)
        return changed, before, box.stamp(folder)


def expunge(box: store_api.Mailbox, folder: str, uids: list[int] | None) -> tuple[list[int], Stamp, Stamp]:
    """EXPUNGE (UID EXPUNGE with `uids`) in one worker-thread hop: the UIDs expunged, and the
    folder's stamps before and after, as store_flags."""
    with box.exclusive():
        before = box.stamp(folder)
        done = box.expunge(folder, uids)
        return done, before, box.stamp(folder)


def folder_keywords(box: store_api.Mailbox, folder: str) -> set[str]:
    """The distinct keywords of a folder (worker thread)."""
    return keywords_of(box.list(folder))


def list_and_claim(box: store_api.Mailbox, folder: str, uidvalidity: int, known_max: int,
                    readonly: bool) -> Listing:
    """One worker-thread hop: the folder's listing, when it has UIDs above `known_max` the
    \\Recent floor claimed for them (None when nothing is new), and the folder's stamp."""
    infos, stamp = box.list_stamped(folder, uidvalidity=uidvalidity)  # NoSuchFolder also when replaced
    top = infos[-1].uid if infos else 0
    if top <= known_max:
        return infos, None, stamp
    return infos, box.claim_recent(folder, uidvalidity, top, readonly), stamp
