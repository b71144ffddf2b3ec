"""Building one `* n FETCH (...)` response from a message's bytes and its store data (pure)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Iterable

from mailsift.protocols.imap import binary, mimetree, response
from mailsift.protocols.imap.bodystructure import body_structure, encode_body
from mailsift.protocols.imap.envelope import envelope
from mailsift.protocols.imap.parser import FetchAtt, Section, format_datetime
from mailsift.protocols.imap.preview import preview
from mailsift.protocols.imap.sections import partial, section_bytes

_NEEDS_DATA = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]"}
_NEEDS_DATA |= {"PREVIEW", "BINARY[]", "BINARY.SIZE"}
_HEADER_ONLY_TEXTS = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"}


def needs_data(atts: Iterable[FetchAtt]) -> bool:
    return any(a.name in _NEEDS_DATA for a in atts)


def header_only(atts: Iterable[FetchAtt]) -> bool:
    """True when every attribute is answered from the top-level header alone (a client listing a
    folder): the session may read just the header of a big message."""
    for a in atts:
        if a.name in ("RFC822.HEADER",):
            continue
        if a.name == "BODY[]":
            if a.section is None or a.section.part or a.section.text not in _HEADER_ONLY_TEXTS:
                return False
            continue
        if a.name in _NEEDS_DATA:
            return False
    return True


@dataclass
class MessageData:
    """What FETCH needs of one message; `raw` (CRLF) only when an attribute needs the bytes."""
    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int = 0
    raw: bytes | None = None
    header_only: bool = False        # only top-level header sections are asked for
    _root: mimetree.Part | None = None
    _top: mimetree.Part | None = None

    @property
    def root(self) -> mimetree.Part:
        if self._root is None:
            self._root = mimetree.parse(self.raw or b"")
        return self._root

    @property
    def top(self) -> mimetree.Part:
        """The top-level header alone (the full tree when it was parsed anyway)."""
        if self._root is not None:
            return self._root
        if self._top is None:
            self._top = mimetree.parse_top(self.raw or b"")
        return self._top


def flag_atoms(flags: Iterable[str], recent: bool = False) -> bytes:
    """System flags (and \\Recent) first, then keywords, as Dovecot orders them."""
    system = sorted(f for f in flags if f.startswith("\\"))
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    return response.flag_list(system + (["\\Recent"] if recent else []) + keywords)


def internaldate(epoch: float) -> bytes:
    when = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
    return b'"' + format_datetime(when).encode("ascii") + b'"'


def fetch_items(msg: MessageData, atts: Iterable[FetchAtt], recent: bool = False,
                with_uid: bool = False, with_modseq: bool = False) -> bytes:
    """The parenthesized FETCH data for one message (without `* n FETCH `)."""
    parts: list[bytes] = []
    names_done: set[str] = set()
    atts = list(atts)
    if with_uid and not any(a.name == "UID" for a in atts):
        atts = [FetchAtt("UID")] + atts
    if with_modseq and not any(a.name == "MODSEQ" for a in atts):
        atts = atts + [FetchAtt("MODSEQ")]
    for a in atts:
        key = a.response_name()
        if key in names_done:
            continue
        names_done.add(key)
        parts.append(key.encode("ascii", "replace") + b" " + _value(msg, a, recent))
    return b"(" + b" ".join(parts) + b")"


def _value(msg: MessageData, a: FetchAtt, recent: bool) -> bytes:
    n = a.name
    if n == "UID":
        return b"%d" % msg.uid
    if n == "FLAGS":
        return flag_atoms(msg.flags, recent)
    if n == "INTERNALDATE":
        return internaldate(msg.internal_date)
    if n == "RFC822.SIZE":
        return b"%d" % msg.size
    if n == "MODSEQ":
        return b"(%d)" % msg.modseq
    if n == "ENVELOPE":
        return response.encode(envelope(msg.root))
    if n == "BODYSTRUCTURE":
        return encode_body(body_structure(msg.root, True))
    if n == "BODY":
        return encode_body(body_structure(msg.root, False))
    if n == "RFC822":
        return response.literal(msg.raw or b"")
    if n == "RFC822.HEADER":
        return response.literal(msg.top.header)
    if n == "RFC822.TEXT":
        return response.literal(msg.root.body)
    if n == "BODY[]":
        section = a.section or Section()
        if not section.part and section.text is None:  # BODY[]: the bytes as they are, no parse
            return response.literal(partial(msg.raw or b"", a.partial))
        top_only = not section.part and section.text in _HEADER_ONLY_TEXTS
        data = section_bytes(msg.top if top_only else msg.root, section)
        return response.literal(partial(data, a.partial))
    if n in ("BINARY[]", "BINARY.SIZE"):  # RFC 3516; binary.UnknownCTE: NO [UNKNOWN-CTE]
        data, decoded = binary.section(msg.root, a.section.part if a.section else ())
        if n == "BINARY.SIZE":
            return b"%d" % len(data)
        data = partial(data, a.partial)
        return (b"~" if decoded or b"\0" in data else b"") + response.literal(data)
    if n == "PREVIEW":  # a literal also past 4 characters to escape, as Dovecot sends it
        text = preview(msg.root).encode("utf-8")
        escapes = text.count(b'"') + text.count(b"\\")
        return response.literal(text) if escapes > 4 else response.string(text)
    raise ValueError(f"unknown fetch attribute {n}")
