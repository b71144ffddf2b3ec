"""Base subject extraction (RFC 5256 section 2.1), for SORT (SUBJECT) and THREAD.

`base_subject(value)` takes a Subject field value (raw bytes, unfolded) and returns the base
subject and whether the message is a reply or forward (step 2 removed "(fwd)", step 3 a
"re:"/"fw:"/"fwd:" leader, or step 6 a "[fwd: ...]" wrapper). The steps, as the RFC numbers them:

1. encoded-words decoded, tabs and line breaks made spaces, runs of spaces made one;
2. trailing "(fwd)" and blanks removed, repeatedly;
3. a leading subj-leader removed: `*subj-blob ("re" / "fw" / "fwd") *WSP [subj-blob] ":"`, or
   one blank; 4. a leading subj-blob `[...]` removed when something is left after it;
5. 3 and 4 repeated until neither applies; 6. `[fwd: ... ]` unwrapped, and back to 2.

Pure. Matching is case-insensitive; the result keeps the case (collation is the caller's).
"""

from __future__ import annotations

import re

from mailsift.protocols.imap.search import decode_words

_BLANKS = re.compile(r"[ \t\r\n]+")


def field_value(raw: bytes) -> bytes:
    """A raw header field (name, colon, folded lines) as the value base subject extraction
    takes: after the colon and its blanks, the folds (CRLF) kept, the final line end gone."""
    colon = raw.find(b":")
    value = raw[colon + 1:].lstrip(b" \t") if colon >= 0 else b""
    if value.endswith(b"\n"):
        value = value[:-2] if value.endswith(b"\r\n") else value[:-1]
    return value


def normalise(value: bytes) -> str:
    """Step 1: encoded-words decoded, then runs of blanks (SP, TAB, CR, LF) made one space, as
    Dovecot 2.3 does it: from the first TAB, CR, LF or double blank on, so a space before a
    fold (`a \\r\\n\\tb`) leaves two spaces where `a  b` and `a\\r\\n\\tb` leave one. Sorting
    and threading must group subjects exactly as the reference server does."""
    text = decode_words(value)
    n = len(text)
    i = 0
    while i < n:
        c = text[i]
        if c in "\t\r\n" or (c == " " and i + 1 < n and text[i + 1] in " \t"):
            break
        i += 1
    if i >= n:
        return text
    out = [text[:i], _BLANKS.sub(" ", text[i:])]
    return "".join(out)


def _skip_blanks(s: str, i: int) -> int:
    while i < len(s) and s[i] == " ":
        i += 1
    return i


def _blob(s: str, i: int) -> int | None:
    """The end of a subj-blob (`[` *BLOBCHAR `]` *WSP) starting at i, or None."""
    if i >= len(s) or s[i] != "[":
        return None
    j = i + 1
    while j < len(s) and s[j] not in "[]":
        j += 1
    if j >= len(s) or s[j] != "]":
        return None
    return _skip_blanks(s, j + 1)


def _refwd(s: str, i: int) -> int | None:
    """The end of a subj-refwd (`re` / `fw` / `fwd`, *WSP, [subj-blob], `:`) at i, or None."""
    low = s[i:i + 3].lower()
    if low.startswith("re"):
        i += 2
    elif low == "fwd":
        i += 3
    elif low.startswith("fw"):
        i += 2
    else:
        return None
    i = _skip_blanks(s, i)
    end = _blob(s, i)
    if end is not None:
        i = end
    if i < len(s) and s[i] == ":":
        return i + 1
    return None


def _leader(s: str) -> tuple[str, bool] | None:
    """Step 3 once: (the rest, whether a re/fwd leader went), or None when none matches."""
    if s.startswith(" "):
        return s[1:], False
    i = 0
    while True:
        end = _blob(s, i)
        if end is None:
            break
        i = end
    j = _refwd(s, i)
    if j is None:
        return None
    return s[j:], True


def _blob_prefix(s: str) -> str | None:
    """Step 4 once: the rest after a leading subj-blob, when something is left."""
    end = _blob(s, 0)
    if end is None or end >= len(s):
        return None
    return s[end:]


def base_subject(value: bytes | None) -> tuple[str, bool]:
    """(base subject, is a reply or forward) of a Subject field value (None: no Subject); the
    value with its folds, as field_value() gives it."""
    s = normalise(value) if value is not None else ""
    reply = False
    while True:
        # step 2: trailers
        while True:
            if s.endswith(" "):
                s = s.rstrip(" ")
            elif s[-5:].lower() == "(fwd)":
                s = s[:-5]
                reply = True
            else:
                break
        # steps 3 to 5
        while True:
            led = _leader(s)
            if led is not None:
                s, was = led
                reply = reply or was
                continue
            rest = _blob_prefix(s)
            if rest is not None:
                s = rest
                continue
            break
        # step 6
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            reply = True
            continue
        return s, reply
