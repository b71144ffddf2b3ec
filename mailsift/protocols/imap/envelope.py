"""ENVELOPE (RFC 3501 7.4.2) from a message's header fields.

Strings are the raw field values (unfolded; encoded-words left as they are). Addresses are
parsed leniently, as Dovecot does: a missing domain reads `MISSING_DOMAIN`, a missing mailbox
`MISSING_MAILBOX`; groups give `(NIL NIL "name" NIL)` ... `(NIL NIL NIL NIL)`.
"""

from __future__ import annotations

import re
from typing import Any

from mailsift.protocols.imap.mimetree import Part

Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]


def envelope(part: Part) -> list[Any]:
    """The ENVELOPE of the message whose header is `part`'s, as response values."""
    def value(name: str) -> bytes | None:
        values = part.field_values(name)  # the last occurrence wins, as in Dovecot
        return values[-1] if values else None

    def addresses(name: str) -> list[Address] | None:
        values = part.field_values(name)  # every occurrence, as Dovecot merges them
        if not values:
            return None
        parsed = [a for v in values for a in parse_addresses(v)]
        return parsed or None

    frm = addresses("From")
    sender = addresses("Sender") or frm
    reply_to = addresses("Reply-To") or frm
    subject = value("Subject")
    return [value("Date"), None if subject is None else for_humans(subject), _addr_list(frm), _addr_list(sender),
            _addr_list(reply_to), _addr_list(addresses("To")), _addr_list(addresses("Cc")),
            _addr_list(addresses("Bcc")), value("In-Reply-To"), value("Message-ID")]


def for_humans(text: bytes) -> bytes:
    """Whitespace runs (SP, TAB, CR, LF) become one space, none at either end; NUL becomes 0x80."""
    return re.sub(rb"[ \t\r\n]+", b" ", text.replace(b"\0", b"\x80")).strip(b" ")


def _addr_list(addrs: list[Address] | None) -> list[list[bytes | None]] | None:
    if not addrs:
        return None
    return [list(a) for a in addrs]


# ---------------------------------------------------------------------------------------------
# RFC 5322 address lists, leniently

_SPECIALS = b"()<>@,;:\\\".[]"


def _tokens(text: bytes) -> list[tuple[str, bytes]]:
    """(kind, value) with kind in: atom, quoted, comment, domlit, special."""
    out: list[tuple[str, bytes]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in b" \t\r\n":
            i += 1
        elif c == 0x22:  # "
            i += 1
            buf = bytearray()
            while i < n and text[i] != 0x22:
                if text[i] == 0x5C and i + 1 < n:
                    i += 1
                if text[i] not in b"\r\n":
                    buf.append(text[i])
                i += 1
            out.append(("quoted" if i < n else "badquote", bytes(buf)))
            i += 1
        elif c == 0x28:  # (
            depth = 1
            i += 1
            buf = bytearray()
            while i < n and depth:
                ch = text[i]
                if ch == 0x5C and i + 1 < n:
                    buf.append(text[i + 1])
                    i += 2
                    continue
                if ch == 0x28:
                    depth += 1
                elif ch == 0x29:
                    depth -= 1
                    if not depth:
                        i += 1
                        break
                buf.append(ch)
                i += 1
            out.append(("comment", bytes(buf)))
        elif c == 0x5B:  # [
            j = text.find(b"]", i)
            j = n - 1 if j < 0 else j
            out.append(("domlit", text[i:j + 1]))
            i = j + 1
        elif c in _SPECIALS:
            out.append(("special", bytes([c])))
            i += 1
        else:
            j = i
            while j < n and text[j] not in _SPECIALS and text[j] not in b" \t\r\n":
                j += 1
            out.append(("atom", text[i:j]))
            i = j
    return out


def parse_addresses(value: bytes) -> list[Address]:
    toks = _tokens(value)
    out: list[Address] = []
    pos = 0
    in_group = False
    while pos < len(toks):
        # collect one address (or a group start) up to , or ; or :
        start = pos
        depth_angle = False
        while pos < len(toks):
            kind, v = toks[pos]
            if kind == "special" and v == b"<":
                depth_angle = True
            elif kind == "special" and v == b">":
                depth_angle = False
            elif kind == "special" and not depth_angle and v in (b",", b";", b":"):
                break
            pos += 1
        chunk = toks[start:pos]
        sep = toks[pos][1] if pos < len(toks) else None
        pos += 1
        if sep == b":" and not in_group:
            name = _phrase([t for t in chunk if t[0] != "comment"])
            out.append((None, None, name or b"", None))
            in_group = True
            continue
        addr = _address(chunk)
        if addr is not None:
            out.append(addr)
        if sep == b";" and in_group:
            out.append((None, None, None, None))
            in_group = False
    if in_group:
        out.append((None, None, None, None))
    return out


def _phrase(toks: list[tuple[str, bytes]]) -> bytes | None:
    words: list[bytes] = []
    for kind, v in toks:
        if kind in ("atom", "quoted"):
            words.append(v)
        elif kind == "special" and v == b".":
            words.append(b".")
    if not words:
        return None
    text = b""
    for w in words:
        if text and w != b"." and not text.endswith(b"."):
            text += b" "
        text += w
    return text


def _addr_spec(toks: list[tuple[str, bytes]]) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(route, mailbox, host) from the tokens of [route:]local@domain."""
    route = None
    if toks and toks[0] == ("special", b"@"):
        # obsolete source route: @a,@b:user@host
        colon = next((i for i, t in enumerate(toks) if t == ("special", b":")), None)
        if colon is not None:
            route = b"".join(v for k, v in toks[:colon] if k != "comment")
            toks = toks[colon + 1:]
    toks = [t for t in toks if t[0] != "comment"]
    # local-part: words separated by dots
    i = 0
    local = b""
    want_word = True
    while i < len(toks):
        kind, v = toks[i]
        if want_word and kind in ("atom", "quoted"):
            local += v
        elif not want_word and kind == "special" and v == b".":
            local += v
        elif kind == "special" and v == b".":  # obsolete: a.. or .a
            local += v
            want_word = not want_word
        else:
            break
        want_word = not want_word
        i += 1
    if i < len(toks) and toks[i] != ("special", b"@"):
        return route, (local or None), b"SYNTAX_ERROR"
    # domain: atoms separated by dots, or a domain literal; the rest is ignored
    domain = b""
    want_word = True
    for kind, v in toks[i + 1:]:
        if want_word and kind in ("atom", "domlit"):
            domain += v
        elif not want_word and kind == "special" and v == b".":
            domain += v
        else:
            break
        want_word = not want_word
    return route, (local or None), (domain or None)


def _address(chunk: list[tuple[str, bytes]]) -> Address | None:
    if not chunk:
        return None
    if any(k == "badquote" for k, _ in chunk):
        return (None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")
    lt = next((i for i, t in enumerate(chunk) if t == ("special", b"<")), None)
    if lt is not None and not all(k in ("atom", "quoted", "comment") or v == b"."
                                  for k, v in chunk[:lt]):
        lt = None  # not `phrase <...>`: an addr-spec with trailing junk
    if lt is not None:
        gt = next((i for i, t in enumerate(chunk) if t == ("special", b">") and i > lt), len(chunk))
        name = _phrase([t for t in chunk[:lt] if t[0] != "comment"])
        route, mailbox, host = _addr_spec(chunk[lt + 1:gt])
    else:
        comments = [v for k, v in chunk if k == "comment"]
        route, mailbox, host = _addr_spec(chunk)
        name = comments[-1] if comments else None
        if mailbox is None and host is None:
            return None
        if host == b"SYNTAX_ERROR":
            # not an addr-spec: Dovecot reads the words as a display name without address
            words = []
            for kind, v in chunk:
                if kind in ("atom", "quoted") or (kind == "special" and v == b"."):
                    words.append((kind, v))
                elif kind != "comment":
                    break
            name, route, mailbox, host = _phrase(words), None, None, None
    if name:
        name = for_humans(name)
    elif name is not None:
        name = None
    if mailbox is None:
        mailbox = b"MISSING_MAILBOX"
    if host is None:
        host = b"MISSING_DOMAIN"
    return (name, route, mailbox, host)
