"""IMAP4rev2 (RFC 9051) beside IMAP4rev1: what changes for a session after `ENABLE IMAP4rev2`.

A session that never enables it is served exactly as an IMAP4rev1 one. After the ENABLE:
- SEARCH and UID SEARCH answer `* ESEARCH (TAG "t") [UID] ALL set` (RFC 9051 7.3.4), never
  `* SEARCH`;
- no `* n RECENT` response and no `\\Recent` flag (the session claims no message as recent,
  so an IMAP4rev1 session of the same user still sees them recent);
- mailbox names are UTF-8 on the wire both ways (RFC 9051 5.1), no modified UTF-7;
- SELECT/EXAMINE send the `LIST` response naming the mailbox (RFC 9051 6.3.2) and no
  `OK [UNSEEN n]`;
- DELETE of a folder with children answers `NO [HASCHILDREN]` (IMAP4rev1: `NO [CANNOT]`).
Everything else RFC 9051 folds in (ESEARCH, SEARCHRES, LIST-EXTENDED, LIST-STATUS, BINARY,
STATUS=SIZE and DELETED, UNSELECT, UIDPLUS, MOVE, ENABLE, IDLE, NAMESPACE, SPECIAL-USE, the
`OK [CLOSED]` of a SELECT that closes another mailbox) the server offers to both.

Pure: the session asks these functions and keeps the one flag (`ImapSession.rev2`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailsift.protocols.imap import response

if TYPE_CHECKING:  # the parser imports this module: keep the store out of its imports
    from mailsift.store.api import FolderInfo

CAPABILITIES = ("IMAP4rev2",)
ENABLE_NAME = "IMAP4REV2"            # as the parser hands ENABLE's arguments (upper case)
SEARCH_RETURNS = frozenset({"ALL"})  # a plain SEARCH answers as `SEARCH RETURN (ALL)`
DELETE_CHILDREN_CODE = "HASCHILDREN"  # DELETE of a folder with children (RFC 9051 7.1)


class InvalidUTF8Name(ValueError):
    """A mailbox name that is not UTF-8 or holds a control character."""


def decode_name(raw: bytes) -> str:
    """A mailbox name (or LIST pattern) as an IMAP4rev2 client sends it: UTF-8, taken as it is
    (`&` is an ordinary character, no modified UTF-7)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidUTF8Name("mailbox name is not UTF-8") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidUTF8Name("control character in mailbox name")
    return name


def encode_name(name: str) -> bytes:
    """A mailbox name for an IMAP4rev2 client: an atom when it can be, else a quoted string,
    which may hold UTF-8 in IMAP4rev2 (RFC 9051 9, QUOTED-CHAR); a literal only for a name
    that cannot be quoted."""
    data = name.encode("utf-8")
    if data.isascii():
        return response.astring(data)
    if len(data) > 1024 or any(b in data for b in (0x0D, 0x0A, 0x00)):
        return response.literal(data)
    return response.quoted(data)


def select_list_line(name: bytes, separator: str, attrs: list[str]) -> bytes:
    """The `* LIST (attrs) "sep" name` an IMAP4rev2 SELECT/EXAMINE sends (RFC 9051 6.3.2)."""
    return b"* LIST (" + " ".join(attrs).encode() + b') "' + separator.encode() + b'" ' + name + b"\r\n"


def folder_attrs(info: FolderInfo) -> list[str]:
    """The LIST attributes of a folder, as a plain LIST answers them."""
    attrs = ["\\HasChildren" if info.has_children else "\\HasNoChildren"]
    if info.special_use:
        attrs.append(info.special_use)
    return attrs
