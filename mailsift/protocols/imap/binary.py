"""BINARY (RFC 3516): message sections with their Content-Transfer-Encoding undone.

`section(root, path)` answers BINARY[path] (and its size BINARY.SIZE[path]) from the parsed
message: a leaf part's body decoded (base64, quoted-printable; 7bit, 8bit, binary and no
encoding as they are); a multipart's body, an encapsulated message or the whole message
(`BINARY[]`) with every leaf inside decoded and each decoded part's Content-Transfer-Encoding
field saying `binary`, as Dovecot 2.3 answers. A part whose encoding we do not know raises
UnknownCTE (the session answers `NO [UNKNOWN-CTE]`). A part that does not exist is empty.
Pure; iterative over the parts (no recursion limit for deep nesting).
"""

from __future__ import annotations

import base64
import binascii
import re

from mailsift.protocols.imap.mimetree import Part
from mailsift.protocols.imap.sections import find_part

IDENTITY = {b"", b"7bit", b"8bit", b"binary"}
DECODED = {b"base64", b"quoted-printable"}


class UnknownCTE(Exception):
    """A Content-Transfer-Encoding BINARY cannot undo."""


def _cte(part: Part) -> bytes:
    """The part's Content-Transfer-Encoding, MIME-Version or not (Dovecot decodes the body of an
    encapsulated message that does not declare it)."""
    return (part.field_value("Content-Transfer-Encoding") or b"").strip().lower()


def decode_leaf(part: Part) -> bytes:
    cte = _cte(part)
    body = part.body
    if cte in IDENTITY:
        return body
    if cte == b"base64":
        clean = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
        if len(clean) % 4 == 1:
            clean = clean[:-1]
        try:
            return base64.b64decode(clean + b"=" * (-len(clean) % 4))
        except (binascii.Error, ValueError):
            return b""
    if cte == b"quoted-printable":
        return decode_qp(body)
    raise UnknownCTE(cte.decode("latin-1", "replace"))


_QP_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")


def decode_qp(body: bytes) -> bytes:
    """Quoted-printable as RFC 2045 6.7 and Dovecot read it: blanks at a line's end dropped,
    `=` at a line's end a soft break, `=XX` (either case) the octet, any other `=` kept."""
    lines = body.split(b"\n")
    out: list[bytes] = []
    for i, line in enumerate(lines):
        last = i == len(lines) - 1
        line = line.rstrip(b"\r").rstrip(b" \t")
        if line.endswith(b"="):
            out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), line[:-1]))
            continue
        out.append(_QP_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), line) + (b"" if last else b"\r\n"))
    return b"".join(out)


def _header(part: Part) -> bytes:
    """The part's header; when we decode its body, its Content-Transfer-Encoding fields removed
    and `Content-Transfer-Encoding: binary` added last, as Dovecot writes it."""
    header = part.header
    if _cte(part) in DECODED:
        for name, raw in part.fields:
            if name.lower() == "content-transfer-encoding":
                header = header.replace(raw, b"", 1)
        term = part.header_terminator
        header = header[:len(header) - len(term)] + b"Content-Transfer-Encoding: binary\r\n" + term
    return header


def _render(part: Part, with_header: bool) -> tuple[bytes, bool]:
    """The part (header if asked, then body) with every leaf inside decoded, and whether any
    was (base64 or quoted-printable). Iterative."""
    out: list[bytes] = []
    decoded = False
    # a stack of work: a Part to open (with header?) or bytes to emit
    stack: list[tuple[Part, bool] | bytes] = [(part, with_header)]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            out.append(item)
            continue
        p, header = item
        if header:
            out.append(_header(p))
        decoded = decoded or (not p.is_multipart and p.message is None and _cte(p) in DECODED)
        if p.is_multipart:
            todo: list[tuple[Part, bool] | bytes] = []
            pos = p.body_start
            for child in p.children:
                todo.append(p.data[pos:child.start])
                todo.append((child, True))
                pos = child.end
            todo.append(p.data[pos:p.end])
            stack.extend(reversed(todo))
        elif p.message is not None:
            stack.append((p.message, True))
        else:
            out.append(decode_leaf(p))
    return b"".join(out), decoded


def section(root: Part, path: tuple[int, ...]) -> tuple[bytes, bool]:
    """BINARY[path] before any partial, and whether a transfer encoding was undone in it (then,
    or when it holds a NUL, Dovecot sends it as a literal8 `~{n}`)."""
    if not path:
        return _render(root, True)
    part = find_part(root, path)
    if part is None:
        return b"", False
    if part.is_multipart:
        return _render(part, False)
    if part.message is not None:
        return _render(part.message, True)
    return decode_leaf(part), _cte(part) in DECODED
