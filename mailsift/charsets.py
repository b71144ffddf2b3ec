"""Declared MIME charsets -> Python codecs, for real text encodings only.

A message declares its charsets (`Content-Type: text/plain; charset=...`, RFC 2047
encoded-words, RFC 2231 parameters), and Python's codec registry answers to far more names
than mail charsets: `punycode` and `idna` (the punycode decoder is quadratic: two 127 KB parts
cost 2 s of CPU), `unicode_escape`, and the bytes-to-bytes transforms (`base64_codec`,
`zlib_codec`, `rot13`, ...). Every place that decodes with a declared charset asks
`text_codec()` first and falls back to its default when the answer is None.
"""

from __future__ import annotations

import codecs
import email.header
import encodings
import encodings.aliases
import functools
import os

# Python-specific codecs that are not charsets a message can be written in (the docs'
# "Python Specific Encodings"), whatever their registry entry says about being text.
_REFUSED: frozenset[str] = frozenset({
    "punycode",
    "idna",
    "unicode-escape",
    "raw-unicode-escape",
    "undefined",
    "charmap",
    "mbcs",
    "oem",
})

# Labels that mail software writes for "no idea" or plain ASCII: read as latin-1, which
# never fails and keeps every byte.
_UNKNOWN_AS_LATIN1: frozenset[str] = frozenset({
    "default", "unknown", "x-unknown", "unknown-8bit", "us-ascii", "ascii",
})

_MAX_NAME = 64  # longer labels are no charset


def normalize(charset: str) -> str:
    """The declared label as a lookup key: RFC 2231 language suffix, quotes, case gone."""
    return charset.split("*", 1)[0].strip().strip('"').strip().lower()


@functools.cache
def _registry_names() -> frozenset[str]:
    """Every name the standard codec search function can resolve: its aliases and its
    modules, in its own normalized form. Read once, on first use."""
    names = set(encodings.aliases.aliases)
    names.update(encodings.aliases.aliases.values())
    for path in encodings.__path__:  # its modules (pkgutil would import inspect and typing)
        names.update(f.split(".", 1)[0] for f in os.listdir(path) if f.endswith((".py", ".pyc")))
    return frozenset(names)


def _registered(label: str) -> bool:
    """Whether codecs.lookup could find `label`, asked without calling it: the standard search
    function remembers every name it failed to find, for the life of the process, so a stream
    of messages each declaring a new made-up charset would grow a daemon's memory without end."""
    key = encodings.normalize_encoding(label.lower().replace(" ", "-"))
    names = _registry_names()
    return key in names or key.replace(".", "_") in names


def lookup(label: str) -> codecs.CodecInfo | None:
    """codecs.lookup for a declared label, None for what no codec answers to; never leaves an
    unknown name in the codec registry's caches (see _registered)."""
    if not label or len(label) > _MAX_NAME or not label.isascii() or not _registered(label):
        return None
    try:
        return codecs.lookup(label)
    except (LookupError, ValueError, TypeError):
        return None


@functools.lru_cache(maxsize=512)
def _lookup(label: str) -> str | None:
    if not label or len(label) > _MAX_NAME or not label.isascii():
        return None
    if label in _UNKNOWN_AS_LATIN1:
        return "latin-1"
    info = lookup(label)
    if info is None:
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED:
        return None
    return info.name


def text_codec(charset: str | None) -> str | None:
    """The codec name for a declared charset if it is a real text encoding, else None."""
    if not charset:
        return None
    return _lookup(normalize(str(charset)))


def decode(data: bytes, charset: str | None, errors: str = "replace") -> str:
    """`data` in its declared charset; an unknown or refused charset reads as UTF-8, then
    latin-1 (so nothing is lost and nothing raises)."""
    codec = text_codec(charset)
    if codec is not None:
        try:
            return data.decode(codec, errors)
        except (UnicodeError, LookupError, ValueError, TypeError):
            pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def header_text(value: str) -> str:
    """An RFC 2047 header value as text, each encoded-word decoded in its charset when that
    is a real text encoding (email.header.make_header would hand any charset to the codecs).
    Never raises."""
    try:
        parts = email.header.decode_header(value)
    except Exception:  # noqa: BLE001 - malformed encoded-words: keep the raw text
        return value
    return "".join(decode(chunk, cs) if isinstance(chunk, bytes) else chunk for chunk, cs in parts)
