"""Modified UTF-7 for IMAP mailbox names (RFC 3501 section 5.1.3)."""

from __future__ import annotations

import base64


class MUTF7Error(ValueError):
    """A mailbox name that is not valid modified UTF-7."""


def encode(name: str) -> bytes:
    """Encode a Unicode mailbox name as modified UTF-7 bytes."""
    out = bytearray()
    pending: list[str] = []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.extend(b"&" + base64.b64encode(raw).rstrip(b"=").replace(b"/", b",") + b"-")
            pending.clear()

    for ch in name:
        if 0x20 <= ord(ch) <= 0x7E:
            flush()
            out.extend(b"&-" if ch == "&" else ch.encode("ascii"))
        else:
            pending.append(ch)
    flush()
    return bytes(out)


def decode(data: bytes | str) -> str:
    """Decode a modified UTF-7 mailbox name; raise MUTF7Error when it is malformed."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError as exc:
            raise MUTF7Error("mailbox name is not 7-bit") from exc
    out: list[str] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c < 0x20 or c > 0x7E:
            raise MUTF7Error("mailbox name has a control or 8-bit character")
        if c != 0x26:  # '&'
            out.append(chr(c))
            i += 1
            continue
        end = data.find(b"-", i + 1)
        if end < 0:
            raise MUTF7Error("unterminated &... sequence")
        chunk = data[i + 1:end]
        i = end + 1
        if not chunk:
            out.append("&")
            continue
        if any(ch not in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+," for ch in chunk):
            raise MUTF7Error("invalid character in &... sequence")
        b64 = chunk.replace(b",", b"/")
        b64 += b"=" * (-len(b64) % 4)
        try:
            raw = base64.b64decode(b64, validate=True)
            text = raw.decode("utf-16-be")
        except (ValueError, UnicodeDecodeError) as exc:
            raise MUTF7Error("invalid &... sequence") from exc
        if len(raw) % 2:
            raise MUTF7Error("odd number of UTF-16 bytes")
        if all(0x20 <= ord(ch) <= 0x7E for ch in text):
            raise MUTF7Error("printable ASCII must not be base64-encoded")
        if encode(text) != b"&" + chunk + b"-":
            raise MUTF7Error("non-canonical &... sequence")
        out.append(text)
    return "".join(out)
