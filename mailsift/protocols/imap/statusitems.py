"""STATUS data items (RFC 3501 6.3.10, RFC 7162 HIGHESTMODSEQ, RFC 8438 SIZE, RFC 9208 DELETED
and DELETED-STORAGE) of one folder, for STATUS and for LIST-STATUS (RFC 5819). Blocking: call
it in a worker thread."""

from __future__ import annotations

from typing import Iterable

from mailsift.store import api as store_api
from mailsift.store.quota import kib

CAPABILITIES = ("STATUS=SIZE",)


def status_items(box: store_api.Mailbox, name: str, items: Iterable[str]) -> tuple[str, list[str]]:
    """(the folder's name as stored, ["MESSAGES 3", ...] in the order asked). Raises NoSuchFolder."""
    st = box.status(name)
    out: list[str] = []
    for item in items:
        if item == "MESSAGES":
            out.append(f"MESSAGES {st.messages}")
        elif item == "RECENT":
            floor = box.claim_recent(st.name, st.uidvalidity, 0, True)  # a peek, claims nothing
            uids = box.uids(st.name) if floor < st.uidnext - 1 else []
            out.append(f"RECENT {sum(1 for u in uids if u > floor)}")
        elif item == "UIDNEXT":
            out.append(f"UIDNEXT {st.uidnext}")
        elif item == "UIDVALIDITY":
            out.append(f"UIDVALIDITY {st.uidvalidity}")
        elif item == "UNSEEN":
            out.append(f"UNSEEN {st.unseen}")
        elif item == "HIGHESTMODSEQ":
            out.append(f"HIGHESTMODSEQ {st.highestmodseq}")
        elif item == "SIZE":  # RFC 8438: the sum of the messages' RFC822.SIZE (CRLF line ends)
            out.append(f"SIZE {st.size}")
        elif item == "DELETED":  # RFC 9051, RFC 9208: messages flagged \\Deleted
            out.append(f"DELETED {st.deleted}")
        elif item == "DELETED-STORAGE":  # RFC 9208: KiB an EXPUNGE would give back
            out.append(f"DELETED-STORAGE {kib(box.deleted_size(st.name)) if st.deleted else 0}")
    return st.name, out


def status_of_many(box: store_api.Mailbox, names: Iterable[str],
                   items: tuple[str, ...]) -> dict[str, list[str]]:
    """LIST-STATUS in one worker-thread hop; a folder deleted meanwhile is left out."""
    out: dict[str, list[str]] = {}
    for name in names:
        try:
            out[name] = status_items(box, name, items)[1]
        except store_api.NoSuchFolder:
            continue
    return out
