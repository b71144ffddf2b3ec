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

import datetime as _dt
import email.utils
import unicodedata
from typing import Any, Callable, Iterable

from mailsift.protocols.imap.basesubject import base_subject
from mailsift.protocols.imap.envelope import parse_addresses
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


def sent_instant(msg: MessageView) -> float:
    """The Date field as seconds since the epoch; INTERNALDATE when it is missing or unusable."""
    value = _first(msg, "Date")
    if value is not None:
        try:
            parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
        except (TypeError, ValueError, IndexError, OverflowError):
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=_dt.timezone.utc)
            try:
                return parsed.timestamp()
            except (OverflowError, ValueError, OSError):
                pass
    return msg.internaldate.timestamp()


def _text(raw: bytes | None) -> str:
    return "" if raw is None else decode_words(raw)


def _mailbox_key(name: str) -> Callable[[MessageView], str]:
    def key(msg: MessageView) -> str:
        addr = first_address(msg, name)
        return casemap(_text(addr[1])) if addr is not None else ""
    return key


def display_name(msg: MessageView, name: str) -> str:
    """RFC 5957: the display name, else the addr-spec (mailbox@host), else empty."""
    addr = first_address(msg, name)
    if addr is None:
        return ""
    nm, mailbox, host = addr
    if nm:
        shown = _text(nm).strip()
        if shown:
            return shown
    spec = _text(mailbox)
    if host is not None:
        spec += "@" + _text(host)
    return spec


def subject_key(msg: MessageView) -> str:
    return casemap(base_subject(_first(msg, "Subject"))[0])


KEYS: dict[str, Callable[[MessageView], Any]] = {
    "ARRIVAL": lambda m: m.internaldate.timestamp(),
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
