"""SORT (RFC 5256) and SORT=DISPLAY (RFC 5957): ordering messages by sort criteria.

`sort(messages, criteria)` takes search.MessageView objects (only their top-level header is
read, through `MessageView.header()`) and a list of (criterion, reverse) pairs as the parser
gives them, and returns the messages in order. Messages equal under every criterion keep
sequence-number order, REVERSE or not (RFC 5256 section 3; Dovecot does the same).

The keys, as RFC 5256 defines them and Dovecot 2.3 computes them:
- ARRIVAL: INTERNALDATE; SIZE: RFC822.SIZE;
- DATE: the Date field as an instant (UTC); without a usable Date, INTERNALDATE;
- FROM, TO, CC: the mailbox (local part) of the first address of the first such field;
- DISPLAYFROM, DISPLAYTO: the display name of that address (encoded-words decoded), or its
  addr-spec when it has none;
- SUBJECT: the base subject (basesubject.py).
Strings compare by i;unicode-casemap (RFC 5051: titlecase, then canonical decomposition).
Pure; the session runs it in a worker thread.
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import unicodedata
from typing import Any, Callable, Iterable

from mailsift.protocols.imap.basesubject import base_subject, field_value
from mailsift.protocols.imap.envelope import _tokens as address_tokens, parse_addresses
from mailsift.protocols.imap.search import MessageView, decode_words

CRITERIA = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO")


def casemap(text: str) -> str:
    """i;unicode-casemap (RFC 5051): each character titlecased, then NFD."""
    if text.isascii():
        return text.upper()
    return unicodedata.normalize("NFD", "".join(c.title() if len(c.title()) == 1 else c for c in text))


def _first(msg: MessageView, name: str) -> bytes | None:
    values = msg.header().field_values(name)
    return values[0] if values else None


def first_address(msg: MessageView, name: str) -> tuple[bytes | None, bytes | None, bytes | None] | None:
    """(display name, mailbox, host) of the first address of the first `name` field."""
    value = _first(msg, name)
    if value is None:
        return None
    for nm, _adl, mailbox, host in parse_addresses(value):
        return nm, mailbox, host
    return None


_MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP",
                                        "OCT", "NOV", "DEC"), 1)}
_ZONES = {"UT": 0, "GMT": 0, "Z": 0, "EST": -300, "EDT": -240, "CST": -360, "CDT": -300, "MST": -420,
          "MDT": -360, "PST": -480, "PDT": -420}
_DATE = re.compile(r"\s*(?:[A-Za-z]+\s*,\s*)?(\d{1,2})\s+([A-Za-z]{3})[A-Za-z]*\s+(\d{4}|\d{2})\s+"
                   r"(\d{1,2})[:.](\d\d)(?:[:.](\d\d))?(?:\s+([+-]\d{4}(?!\d)|[A-Za-z]+))?", re.ASCII)


def parse_date(value: bytes) -> int | None:
    """An RFC 5322 date as Dovecot 2.3 reads it for sorting: seconds since the epoch, or None
    when unusable (a one-digit minute, a day the month lacks, a year before 1900, no day first).
    A two-digit year below 70 is 20xx, else 19xx; a missing or unknown zone is UTC."""
    m = _DATE.match(value.decode("latin-1"))
    if m is None:
        return None
    day, month, year = int(m.group(1)), _MONTHS.get(m.group(2).upper()), m.group(3)
    hour, minute = int(m.group(4)), int(m.group(5))
    yr = int(year)
    if len(year) == 2:
        yr += 2000 if yr < 70 else 1900
    if month is None or yr < 1900 or hour > 23 or minute > 59:
        return None
    try:
        when = _dt.datetime(yr, month, day, hour, minute, min(int(m.group(6) or 0), 59))
    except ValueError:
        return None
    zone = m.group(7) or ""
    if zone[:1] in ("+", "-"):
        offset = int(zone[1:3]) * 60 + int(zone[3:5])
        offset = -offset if zone[0] == "-" else offset
    else:
        offset = _ZONES.get(zone.upper(), 0)
    return calendar.timegm(when.timetuple()) - offset * 60


def sent_instant(msg: MessageView) -> int:
    """The sort date (DATE, and THREAD's sent date): the first Date field, else INTERNALDATE;
    as an unsigned 32-bit number, as Dovecot keeps it (a date before 1970 sorts after 2038)."""
    value = _first(msg, "Date")
    when = parse_date(value) if value is not None else None
    if when is None:
        when = int(msg.internaldate.timestamp())
    return when & 0xFFFFFFFF


def utf8(raw: bytes | None) -> bytes | None:
    """8-bit header bytes that are not UTF-8 made UTF-8 as Dovecot's sort keys read them: what
    is not UTF-8 becomes U+FFFD, one for a whole run (`\\xba\\xce\\xb5` is U+FFFD U+03B5)."""
    if raw is None:
        return None
    try:
        raw.decode("utf-8")
        return raw
    except UnicodeDecodeError:
        return re.sub("\ufffd+", "\ufffd", raw.decode("utf-8", "replace")).encode("utf-8")


def _text(raw: bytes | None) -> str:
    """A phrase for sort keys: encoded-words decoded, other bytes as UTF-8."""
    return "" if raw is None else decode_words(utf8(raw) or b"")


def _raw(raw: bytes | None) -> str:
    """An address part as written (Dovecot decodes no encoded-words in an addr-spec)."""
    return "" if raw is None else raw.decode("utf-8", "replace")


def _mailbox_key(name: str) -> Callable[[MessageView], str]:
    def key(msg: MessageView) -> str:
        addr = first_address(msg, name)
        return casemap(_raw(addr[1])) if addr is not None else ""
    return key


def sort_phrase(value: bytes) -> bytes | None:
    """The display name of the first address in `value` as Dovecot's sort reads it: the words
    (atoms, quoted strings with their blanks kept, empty ones too) before `<`, joined by one
    space, a `.` joined to the word before it; comments skipped. None without a `<` first."""
    words: list[bytes] = []
    for kind, text in address_tokens(value):
        if kind == "special":
            if text == b"<":
                return b" ".join(words)
            if text != b".":
                return None
            if words:
                words[-1] += b"."
            continue
        if kind in ("atom", "quoted"):
            words.append(text)
    return None


def display_name(msg: MessageView, name: str) -> str:
    """RFC 5957: the display name (decoded, as written otherwise), else the addr-spec
    (mailbox@host, as written), else empty."""
    addr = first_address(msg, name)
    if addr is None:
        return ""
    parsed_name, mailbox, host = addr
    nm = sort_phrase(_first(msg, name) or b"")
    if nm is None:  # no `<`: a name in a comment (`a@b (Name)`), as the address parser read it
        nm = parsed_name
    if nm:
        return _text(nm)
    spec = _raw(mailbox)
    if host is not None:
        spec += "@" + _raw(host)
    return spec


def subject_value(msg: MessageView) -> bytes | None:
    """The first Subject field's value with its folds kept (see basesubject.normalise)."""
    for name, raw in msg.header().fields:
        if name.lower() == "subject":
            return utf8(field_value(raw))
    return None


def subject_key(msg: MessageView) -> str:
    return casemap(base_subject(subject_value(msg))[0])


KEYS: dict[str, Callable[[MessageView], Any]] = {
    "ARRIVAL": lambda m: int(m.internaldate.timestamp()) & 0xFFFFFFFF,
    "SIZE": lambda m: m.size,
    "DATE": sent_instant,
    "FROM": _mailbox_key("From"),
    "TO": _mailbox_key("To"),
    "CC": _mailbox_key("Cc"),
    "DISPLAYFROM": lambda m: casemap(display_name(m, "From")),
    "DISPLAYTO": lambda m: casemap(display_name(m, "To")),
    "SUBJECT": subject_key,
}


def sort(messages: Iterable[MessageView], criteria: Iterable[tuple[str, bool]],
         on_missing: type[BaseException] | tuple[type[BaseException], ...] = ()) -> list[MessageView]:
    """The messages ordered by the criteria ((name, reverse) pairs, most significant first).
    Each message's keys are computed once, then what it loaded is released (a SORT over a big
    folder holds keys, not headers). A message whose header cannot be read (`on_missing`: it
    was expunged meanwhile) is left out."""
    crits = list(criteria)
    keyed: list[tuple[MessageView, tuple[Any, ...]]] = []
    for m in sorted(messages, key=lambda m: m.seq):
        try:
            keys = tuple(KEYS[name](m) for name, _rev in crits)
        except on_missing:
            continue
        finally:
            m.release()
        keyed.append((m, keys))
    for i in range(len(crits) - 1, -1, -1):  # stable sorts, least significant first
        keyed.sort(key=lambda mk: mk[1][i], reverse=crits[i][1])
    return [m for m, _k in keyed]
