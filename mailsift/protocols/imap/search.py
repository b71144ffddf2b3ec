"""Evaluating SEARCH keys (RFC 3501 6.4.4) over one message.

`matches(key, msg, largest_seq, largest_uid)` answers whether `msg` (a MessageView: sequence
number, UID, flags, \\Recent, INTERNALDATE, the message bytes) satisfies `key` (parser.SearchKey).
Strings match as case-insensitive substrings of the decoded text: header values with RFC 2047
encoded-words decoded, bodies with their transfer encoding and charset decoded. Dates compare
by calendar day, disregarding time and timezone as RFC 3501 asks (the day in the date's own zone).
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import email.utils
import quopri
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from mailsift import charsets
from mailsift.protocols.imap import mimetree
from mailsift.protocols.imap.parser import SearchKey


@dataclass
class MessageView:
    """One message as SEARCH sees it. `data` (CRLF line ends) may be left None with a `loader`
    that reads it on first need: flag, size, date and set keys never read the message; SORT and
    THREAD read only `header()`."""
    seq: int
    uid: int
    flags: frozenset[str]
    internaldate: _dt.datetime
    data: bytes | None = None
    savedate: _dt.datetime | None = None  # RFC 8514; None: unknown
    recent: bool = False
    modseq: int = 0
    known_size: int | None = None
    loader: Callable[[], bytes] | None = field(default=None, repr=False)
    header_loader: Callable[[], mimetree.Part] | None = field(default=None, repr=False)
    _root: mimetree.Part | None = field(default=None, repr=False)
    _top: mimetree.Part | None = field(default=None, repr=False)
    _body_text: str | None = field(default=None, repr=False)
    _header_text: str | None = field(default=None, repr=False)
    _full_text: str | None = field(default=None, repr=False)

    @property
    def raw(self) -> bytes:
        if self.data is None:
            self.data = self.loader() if self.loader is not None else b""
        return self.data

    @property
    def size(self) -> int:
        return self.known_size if self.known_size is not None else len(self.raw)

    @property
    def root(self) -> mimetree.Part:
        if self._root is None:
            self._root = mimetree.parse(self.raw)
        return self._root

    def header(self) -> mimetree.Part:
        """The top-level header alone (SORT, THREAD): from the parsed message when there is one,
        else from `header_loader` (the session's header cache), else by parsing the message."""
        if self._root is not None:
            return self._root
        if self._top is None:
            self._top = self.header_loader() if self.header_loader is not None else self.root
        return self._top

    def release(self) -> None:
        """Forget what was loaded (bytes, parse, texts): a search over a big folder keeps only
        the small views of what it found."""
        if self.loader is not None:
            self.data = None
        self._root = self._top = None
        self._body_text = self._header_text = self._full_text = None

    def header_values(self, name: str) -> list[str]:
        return [decode_words(v) for v in self.root.field_values(name)]

    def header_text(self) -> str:
        if self._header_text is None:
            self._header_text = fold("\n".join(
                f"{n}: {decode_words(mimetree.unfold_value(raw))}" for n, raw in self.root.fields))
        return self._header_text

    def body_text(self) -> str:
        if self._body_text is None:
            self._body_text = fold("\n".join(_leaf_texts(self.root)))
        return self._body_text

    def full_text(self) -> str:
        """TEXT: the header, the MIME headers of every part, and the bodies."""
        if self._full_text is None:
            self._full_text = fold("\n".join(_leaf_texts(self.root, mime_headers=True)))
        return self.header_text() + "\n" + self._full_text


def fold(text: str) -> str:
    """Case folding for comparisons (i;unicode-casemap approximated by str.casefold)."""
    return text.casefold()


# ---------------------------------------------------------------------------------------------
# Decoding

_ENCODED_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN_WORDS = re.compile(rb"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)[ \t\r\n]+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")


def _charset_decode(data: bytes, charset: str) -> str:
    codec = charsets.text_codec(charset) or "utf-8"  # real text encodings only (no punycode)
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return data.decode(codec if codec != "utf-8" else "latin-1", "replace")


def _raw_text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def decode_words(value: bytes) -> str:
    """A header value with RFC 2047 encoded-words decoded (blanks between two words dropped)."""
    if b"=?" not in value:
        return _raw_text(value)
    value = _BETWEEN_WORDS.sub(rb"\1", value)
    out: list[str] = []
    pos = 0
    for m in _ENCODED_WORD.finditer(value):
        out.append(_raw_text(value[pos:m.start()]))
        charset, enc, text = m.group(1).decode("ascii", "replace"), m.group(2).upper(), m.group(3)
        try:
            if enc == b"B":
                raw = base64.b64decode(text + b"=" * (-len(text) % 4))
            else:
                raw = quopri.decodestring(text.replace(b"_", b" "), header=True)
            out.append(_charset_decode(raw, charset))
        except (binascii.Error, ValueError):
            out.append(_raw_text(m.group(0)))
        pos = m.end()
    out.append(_raw_text(value[pos:]))
    return "".join(out)


def decode_body(part: mimetree.Part) -> str:
    body = part.body
    enc = (part.content_field("Content-Transfer-Encoding") or b"").strip().lower()
    try:
        if enc == b"base64":
            body = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", body) + b"==", validate=False)
        elif enc == b"quoted-printable":
            body = quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass
    charset = part.param("charset") if part.ctype == "text" else None
    return _charset_decode(body, charset) if charset else _raw_text(body)


def _fields_text(part: mimetree.Part) -> str:
    return "\n".join(f"{n}: {decode_words(mimetree.unfold_value(raw))}" for n, raw in part.fields)


def _leaf_texts(part: mimetree.Part, mime_headers: bool = False, top: bool = True) -> list[str]:
    out = [_fields_text(part)] if mime_headers and not top else []
    if part.is_multipart:
        return out + [t for c in part.children for t in _leaf_texts(c, mime_headers, False)]
    if part.message is not None:
        m = part.message
        # BODY skips the encapsulated message's header; TEXT includes it
        return out + ([_fields_text(m)] if mime_headers else []) + _leaf_texts(m, mime_headers, True)
    if part.mime and part.ctype not in ("text", ""):
        return out  # Dovecot searches the bodies of text parts only
    return out + [decode_body(part)]


# ---------------------------------------------------------------------------------------------
# Dates

_EPOCH = _dt.date(1970, 1, 1)


def sent_date(msg: MessageView) -> _dt.date:
    """The Date: field's day; a missing or unreadable Date counts as 1970-01-01 (as Dovecot)."""
    values = msg.root.field_values("Date")
    if not values:
        return _EPOCH
    try:
        parsed = email.utils.parsedate_to_datetime(values[-1].decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return _EPOCH
    return parsed.date() if parsed is not None else _EPOCH


def internal_day(msg: MessageView) -> _dt.date:
    return msg.internaldate.date()


def from_epoch(epoch: float | None) -> _dt.datetime | None:
    """A store date (epoch seconds, None: unknown) as SEARCH compares it (UTC, as FETCH shows it)."""
    return None if epoch is None else _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)


def saved_day(msg: MessageView) -> _dt.date:
    """The save date's day (RFC 8514), the INTERNALDATE's when the save date is unknown."""
    return (msg.savedate or msg.internaldate).date()


# ---------------------------------------------------------------------------------------------
# Evaluation

def matches(key: SearchKey, msg: MessageView, largest_seq: int, largest_uid: int) -> bool:
    fn = _OPS.get(key.op)
    if fn is None:
        raise ValueError(f"unknown search op {key.op}")
    return fn(key, msg, largest_seq, largest_uid)


def search(key: SearchKey, messages: list[MessageView], largest_seq: int | None = None,
           largest_uid: int | None = None) -> list[MessageView]:
    ls = largest_seq if largest_seq is not None else max((m.seq for m in messages), default=0)
    lu = largest_uid if largest_uid is not None else max((m.uid for m in messages), default=0)
    return [m for m in messages if matches(key, m, ls, lu)]


def _flag_in(flag: str, flags: frozenset[str]) -> bool:
    lf = flag.lower()
    return any(f.lower() == lf for f in flags)


def _header(key: SearchKey, msg: MessageView, *_: int) -> bool:
    name, needle = key.args
    values = msg.header_values(name)
    if not values:
        return False
    if needle == "":
        return True
    n = fold(needle)
    if name.lower() in ("from", "to", "cc", "bcc", "sender", "reply-to"):
        # addresses also match in their de-commented, unquoted form
        values = values + [", ".join(f"{nm} <{ad}>" if nm else ad
                                     for nm, ad in email.utils.getaddresses([v])) for v in values]
    return any(n in fold(v) for v in values)


def _date_cmp(get: Callable[[MessageView], _dt.date], cmp: Callable[[_dt.date, _dt.date], bool]):
    def op(key: SearchKey, msg: MessageView, *_: int) -> bool:
        day = get(msg)
        return day is not None and cmp(day, key.args[0])
    return op


_OPS: dict[str, Callable[..., bool]] = {
    "ALL": lambda k, m, ls, lu: True,
    "AND": lambda k, m, ls, lu: all(matches(a, m, ls, lu) for a in k.args),
    "OR": lambda k, m, ls, lu: matches(k.args[0], m, ls, lu) or matches(k.args[1], m, ls, lu),
    "NOT": lambda k, m, ls, lu: not matches(k.args[0], m, ls, lu),
    "SEQ": lambda k, m, ls, lu: k.args[0].contains(m.seq, ls),
    "UID": lambda k, m, ls, lu: k.args[0].contains(m.uid, lu),
    "FLAG": lambda k, m, ls, lu: _flag_in(k.args[0], m.flags),
    "UNFLAG": lambda k, m, ls, lu: not _flag_in(k.args[0], m.flags),
    "KEYWORD": lambda k, m, ls, lu: _flag_in(k.args[0], m.flags),
    "UNKEYWORD": lambda k, m, ls, lu: not _flag_in(k.args[0], m.flags),
    "RECENT": lambda k, m, ls, lu: m.recent,
    "NEW": lambda k, m, ls, lu: m.recent and not _flag_in("\\Seen", m.flags),
    "OLD": lambda k, m, ls, lu: not m.recent,
    "LARGER": lambda k, m, ls, lu: m.size > k.args[0],
    "SMALLER": lambda k, m, ls, lu: m.size < k.args[0],
    "MODSEQ": lambda k, m, ls, lu: m.modseq >= k.args[0],
    # WITHIN (RFC 5032), as Dovecot: OLDER n is INTERNALDATE before now - n, YOUNGER n since then
    "OLDER": lambda k, m, ls, lu: m.internaldate.timestamp() < time.time() - k.args[0],
    "YOUNGER": lambda k, m, ls, lu: m.internaldate.timestamp() >= time.time() - k.args[0],
    "HEADER": _header,
    "BODY": lambda k, m, ls, lu: fold(k.args[0]) in m.body_text(),
    "TEXT": lambda k, m, ls, lu: fold(k.args[0]) in m.full_text(),
    "BEFORE": _date_cmp(internal_day, lambda d, x: d < x),
    "ON": _date_cmp(internal_day, lambda d, x: d == x),
    "SINCE": _date_cmp(internal_day, lambda d, x: d >= x),
    "SENTBEFORE": _date_cmp(sent_date, lambda d, x: d < x),
    "SENTON": _date_cmp(sent_date, lambda d, x: d == x),
    "SENTSINCE": _date_cmp(sent_date, lambda d, x: d >= x),
    # SAVEDATE (RFC 8514): every folder keeps save dates, so SAVEDATESUPPORTED matches all
    "SAVEDBEFORE": _date_cmp(saved_day, lambda d, x: d < x),
    "SAVEDON": _date_cmp(saved_day, lambda d, x: d == x),
    "SAVEDSINCE": _date_cmp(saved_day, lambda d, x: d >= x),
    "SAVEDATESUPPORTED": lambda k, m, ls, lu: True,
}
