"""Encoding IMAP response data: atoms, quoted strings, literals, parenthesized lists.

`encode(value)` turns nested Python values into response bytes:
    None -> NIL, int -> number, Atom -> as is, bytes/str -> quoted string or literal,
    Literal -> always a literal, list/tuple -> parenthesized list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Union


@dataclass(frozen=True)
class Atom:
    """Raw response text sent unquoted (flags, keywords, names like BODY[1]<0>)."""
    text: bytes

    @classmethod
    def of(cls, text: str | bytes) -> "Atom":
        return cls(text.encode("ascii") if isinstance(text, str) else text)


@dataclass(frozen=True)
class Literal:
    """A string always sent as a literal (message bodies and sections)."""
    data: bytes


Value = Union[None, int, bytes, str, Atom, Literal, "list[Value]", "tuple[Value, ...]"]

_QUOTABLE_MAX = 1024


def needs_literal(data: bytes) -> bool:
    return (len(data) > _QUOTABLE_MAX or b"\r" in data or b"\n" in data or b"\0" in data
            or any(b > 0x7E for b in data))


def quoted(data: bytes) -> bytes:
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data


def string(data: bytes | str) -> bytes:
    """A string: quoted when it can be, else a literal."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return literal(data) if needs_literal(data) else quoted(data)


def nstring(data: bytes | str | None) -> bytes:
    return b"NIL" if data is None else string(data)


_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0x00, 0x21)) | set(range(0x7F, 0x100))


def astring(data: bytes | str) -> bytes:
    """An atom when it is one (and not NIL), else a string."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if data and data.upper() != b"NIL" and not any(b in _ATOM_SPECIALS for b in data):
        return data
    return string(data)


def encode(value: Value) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Value, out: list[bytes]) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    elif isinstance(value, int):
        out.append(b"%d" % value)
    elif isinstance(value, Atom):
        out.append(value.text)
    elif isinstance(value, Literal):
        out.append(literal(value.data))
    elif isinstance(value, (bytes, str)):
        out.append(string(value))
    elif isinstance(value, (list, tuple)):
        out.append(b"(")
        for i, item in enumerate(value):
            if i:
                out.append(b" ")
            _encode(item, out)
        out.append(b")")
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as IMAP")


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + b" ".join(f.encode("ascii") for f in flags) + b")"


def tagged(tag: bytes, status: str, text: str, code: str | None = None) -> bytes:
    code_part = f"[{code}] " if code else ""
    return tag + b" " + f"{status} {code_part}{text}".encode("utf-8") + b"\r\n"


def untagged(text: bytes | str) -> bytes:
    if isinstance(text, str):
        text = text.encode("utf-8")
    return b"* " + text + b"\r\n"


def continuation(text: str = "") -> bytes:
    return b"+ " + text.encode("utf-8") + b"\r\n"
