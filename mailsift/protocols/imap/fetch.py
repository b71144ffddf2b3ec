"""Building one `* n FETCH (...)` response from a message's bytes and its store data (pure)."""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from typing import Callable, Iterable

from mailsift.protocols.imap import binary, mimetree, response
from mailsift.protocols.imap.bodystructure import encoded_structure
from mailsift.protocols.imap.envelope import envelope
from mailsift.protocols.imap.parser import FetchAtt, Section, format_datetime
from mailsift.protocols.imap.preview import preview
from mailsift.protocols.imap.sections import _memo_key, partial, section_bytes

_NEEDS_DATA = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]"}
_NEEDS_DATA |= {"PREVIEW", "BINARY[]", "BINARY.SIZE"}
_HEADER_ONLY_TEXTS = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"}
# What a message whose file is gone answers for the attributes that need its bytes (when no
# cache holds them): Dovecot's "NIL replies" (imap-fetch.c), RFC 2180 4.1.3.
_BODY_NIL = b'"text" "plain" NIL NIL NIL "7bit" 0 0'
_NIL_REPLIES = {
    "ENVELOPE": b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    "BODY": b"(" + _BODY_NIL + b")",
    "BODYSTRUCTURE": b"(" + _BODY_NIL + b" NIL NIL NIL NIL)",
}


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


_TREE_ATTS = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822.TEXT"}


def needs_tree(atts: Iterable[FetchAtt]) -> bool:
    """True when an attribute needs the message's whole MIME tree (then parsed off the loop)."""
    for a in atts:
        if a.name in _TREE_ATTS:
            return True
        if a.name == "BODY[]" and a.section is not None and (
                a.section.part or a.section.text not in (None, *_HEADER_ONLY_TEXTS)):
            return True
    return False


def prepare(datas: Iterable["MessageData | None"], atts: Iterable[FetchAtt]) -> None:
    """In a worker thread: parse the messages' MIME trees and encode the BODY/BODYSTRUCTURE
    asked for, so that fetch_items on the event loop finds them done (a message may hold
    mimetree.MAX_PARTS parts)."""
    kinds = {a.name for a in atts} & {"BODY", "BODYSTRUCTURE"}
    for d in datas:
        if d is None or (d.raw is None and d._root is None):
            continue
        root = d.root
        for kind in kinds:
            encoded_structure(root, kind == "BODYSTRUCTURE")


@dataclass
class MessageData:
    """What FETCH needs of one message; `raw` (CRLF) only when an attribute needs the bytes."""
    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int = 0
    raw: bytes | None = None
    save_date: float | None = None   # RFC 8514; None: unknown (FETCH SAVEDATE answers NIL)
    header_only: bool = False        # only top-level header sections are asked for
    # Expunged from the store while this session still sees it (it has not been told yet):
    # served from the view and what the caches hold; `raw` and `_top` None mean no bytes left.
    expunged: bool = False
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
    if isinstance(flags, frozenset):  # (what the store and the view hold)
        return _flag_atoms_of(flags, recent)
    return _flag_atoms(flags, recent)


def _flag_atoms(flags: Iterable[str], recent: bool) -> bytes:
    system = sorted(f for f in flags if f.startswith("\\"))
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    return response.flag_list(system + (["\\Recent"] if recent else []) + keywords)


# perf: a folder has few distinct flag sets; each listing FETCH formatted them per message
_flag_atoms_of = functools.lru_cache(maxsize=4096)(_flag_atoms)


def internaldate(epoch: float) -> bytes:
    when = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
    return b'"' + format_datetime(when).encode("ascii") + b'"'


Getter = Callable[[MessageData, bool], bytes]
Plan = list[tuple[bytes, Getter]]


def plan(atts: Iterable[FetchAtt], with_uid: bool = False, with_modseq: bool = False) -> Plan:
    """What one FETCH command answers for each message: (`NAME `, value getter) per attribute,
    worked out once per command (perf: response names, duplicates and the dispatch on the
    attribute were redone for every message of a listing)."""
    atts = list(atts)
    if with_uid and not any(a.name == "UID" for a in atts):
        atts = [FetchAtt("UID")] + atts
    if with_modseq and not any(a.name == "MODSEQ" for a in atts):
        atts = atts + [FetchAtt("MODSEQ")]
    out: Plan = []
    names_done: set[str] = set()
    for a in atts:
        key = a.response_name()
        if key in names_done:
            continue
        names_done.add(key)
        out.append((key.encode("ascii", "replace") + b" ", _getter(a)))
    return out


def render(msg: MessageData, items: Plan, recent: bool = False) -> bytes:
    """The parenthesized FETCH data for one message (without `* n FETCH `)."""
    return b"(" + b" ".join([name + get(msg, recent) for name, get in items]) + b")"


def fetch_items(msg: MessageData, atts: Iterable[FetchAtt], recent: bool = False,
                with_uid: bool = False, with_modseq: bool = False) -> bytes:
    """The parenthesized FETCH data for one message (without `* n FETCH `)."""
    return render(msg, plan(atts, with_uid, with_modseq), recent)


def _getter(a: FetchAtt) -> Getter:
    n = a.name
    if n == "UID":
        return lambda m, _r: b"%d" % m.uid
    if n == "FLAGS":
        return lambda m, r: flag_atoms(m.flags, r)
    if n == "RFC822.SIZE":
        return lambda m, _r: b"%d" % m.size
    if n == "MODSEQ":
        return lambda m, _r: b"(%d)" % m.modseq
    section = a.section
    if n == "BODY[]" and section is not None and not section.part and a.partial is None \
            and section.text in _HEADER_ONLY_TEXTS:
        memo_key = _memo_key(section.text, section.fields) if section.text != "HEADER" else None

        def header_section(m: MessageData, r: bool) -> bytes:
            if m.expunged and m.raw is None:
                return _value(m, a, r)
            top = m.top
            memo = top._memo  # HEADER.FIELDS answered before for this header (sections.py)
            data = memo.get(memo_key) if memo is not None and memo_key is not None else None
            if data is None:
                data = section_bytes(top, section)
            return b"{%d}\r\n" % len(data) + data
        return header_section
    return lambda m, r: _value(m, a, r)


def _gone_value(msg: MessageData, a: FetchAtt) -> bytes | None:
    """For an expunged message without its bytes: the value from its cached header when the
    attribute needs no more (None: answer it as usual from `msg.top`), else the NIL reply."""
    n = a.name
    if msg._top is not None:
        if n == "RFC822.HEADER":
            return None
        if n == "ENVELOPE":
            return response.encode(envelope(msg._top))
        if n == "BODY[]" and a.section is not None and not a.section.part \
                and a.section.text in _HEADER_ONLY_TEXTS:
            return None
    return _NIL_REPLIES.get(n, b"NIL")


def _value(msg: MessageData, a: FetchAtt, recent: bool) -> bytes:
    n = a.name
    if msg.expunged and msg.raw is None and n in _NEEDS_DATA:
        gone = _gone_value(msg, a)
        if gone is not None:
            return gone
    if n == "UID":
        return b"%d" % msg.uid
    if n == "FLAGS":
        return flag_atoms(msg.flags, recent)
    if n == "INTERNALDATE":
        return internaldate(msg.internal_date)
    if n == "SAVEDATE":
        return internaldate(msg.save_date) if msg.save_date is not None else b"NIL"
    if n == "RFC822.SIZE":
        return b"%d" % msg.size
    if n == "MODSEQ":
        return b"(%d)" % msg.modseq
    if n == "ENVELOPE":
        return response.encode(envelope(msg.root))
    if n == "BODYSTRUCTURE":
        return encoded_structure(msg.root, True)
    if n == "BODY":
        return encoded_structure(msg.root, False)
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
