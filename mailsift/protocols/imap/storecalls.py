"""The IMAP session's compound store calls, each made in one worker-thread hop (a hop costs more
than the calls: a SELECT is a folder lookup, a listing and a \\Recent claim in one).

Only store_api.Mailbox calls here; message bytes are read through loader.py.
"""

from __future__ import annotations

from typing import Any

from mailsift.store import api as store_api
from mailsift.store.listing import keywords_of


def select_data(box: store_api.Mailbox, name: str, readonly: bool) -> tuple[Any, list[Any], int | None, Any]:
    """SELECT/EXAMINE in one worker-thread hop: folder info, listing, \\Recent floor, stamp."""
    info = box.folder(name)
    infos, floor, stamp = list_and_claim(box, info.name, info.uidvalidity, 0, readonly)
    return info, infos, floor, stamp


def append(box: store_api.Mailbox, name: str, message: bytes, flags: Any,
            when: float | None) -> tuple[Any, Any] | None:
    """APPEND in one worker-thread hop: None when the folder does not exist, (None, None) for an
    empty message, else (the new message, the folder's info)."""
    folder = box.find_folder(name)
    if folder is None:
        return None
    if not message:
        return None, None
    info = box.append(folder, message, flags, when)
    return info, box.folder(folder)


def folder_keywords(box: store_api.Mailbox, folder: str) -> set[str]:
    """The distinct keywords of a folder (worker thread)."""
    return keywords_of(box.list(folder))


def list_and_claim(box: store_api.Mailbox, folder: str, uidvalidity: int, known_max: int,
                    readonly: bool) -> tuple[list[Any], int | None, Any]:
    """One worker-thread hop: the folder's listing, when it has UIDs above `known_max` the
    \\Recent floor claimed for them (None when nothing is new), and the folder's stamp."""
    infos, stamp = box.list_stamped(folder, uidvalidity=uidvalidity)  # NoSuchFolder also when replaced
    top = infos[-1].uid if infos else 0
    if top <= known_max:
        return infos, None, stamp
    return infos, box.claim_recent(folder, uidvalidity, top, readonly), stamp
