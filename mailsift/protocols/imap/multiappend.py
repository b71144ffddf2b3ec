"""MULTIAPPEND (RFC 3502): several messages in one APPEND, stored all or none.

The command is read whole by the session (every literal counts against Limits.max_command),
so the bytes are bounded; MAX_MESSAGES bounds the number of files and index rows one
transaction makes."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from mailsift.store import api as store_api

CAPABILITIES = ("MULTIAPPEND",)
MAX_MESSAGES = 1000


class Refused(Exception):
    """NO with this response code and text; nothing was stored."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def append_all(box: store_api.Mailbox, name: str,
               messages: tuple[tuple[tuple[str, ...], _dt.datetime | None, bytes], ...]) -> tuple[int, list[Any]]:
    """In a worker thread: (the folder's UIDVALIDITY, the new messages). Raises Refused."""
    if len(messages) > MAX_MESSAGES:
        raise Refused("LIMIT", f"At most {MAX_MESSAGES} messages in one APPEND")
    if any(not data for _f, _d, data in messages):
        raise Refused("CANNOT", "Empty message")
    folder = box.find_folder(name)
    if folder is None:
        raise Refused("TRYCREATE", "Mailbox doesn't exist")
    infos = box.append_many(folder, [(data, flags, date.timestamp() if date is not None else None)
                                     for flags, date, data in messages])
    return box.folder(folder).uidvalidity, infos
