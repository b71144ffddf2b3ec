"""PREVIEW (RFC 8970): a short plain-text preview of a message, as FETCH PREVIEW answers it.

`preview(root)` takes the parsed message (mimetree.Part) and returns its preview, built as
Dovecot 2.3 builds its snippet (checked differentially):
- only the first leaf part counts (the first child of each multipart, down): text/plain as it
  is, text/html as text (comments, scripts and styles removed, every other tag a blank,
  entities decoded, a bare `&` dropped), a part without a Content-Type (a digest's
  message/rfc822 default) as plain text, anything else gives an empty preview;
- transfer encoding and charset decoded; then snippet(): lines starting with `>` left out
  (when nothing else is left, the quoted text is used), runs of blanks one space (U+00A0 is
  no blank), at most MAX_CHARS characters counted as Dovecot counts them.
Pure; bounded: at most SCAN_BYTES of the part are decoded, and the walk down is iterative.
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re

from mailsift import charsets
from mailsift.protocols.imap import mimetree
from mailsift.protocols.imap.htmlentities import NAME_TO_CODEPOINT

MAX_CHARS = 200          # Dovecot's snippet length (RFC 8970 allows up to 256)
SCAN_BYTES = 64 * 1024   # of the part's body, before decoding

_DROP = re.compile(r"<!--.*?(?:-->|$)|<(script|style)\b.*?(?:</\1\s*>|$)", re.S | re.I)
_TAG = re.compile(r"<[^>]*(?:>|$)", re.S)
_ENTITY = re.compile(r"&(#[0-9]+;|#[xX][0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)?")


def first_leaf(root: mimetree.Part) -> mimetree.Part:
    part = root
    while part.is_multipart:
        part = part.children[0]
    return part


def html_text(text: str) -> str:
    text = _TAG.sub(" ", _DROP.sub("", text))
    return _ENTITY.sub(_entity, text)


def _entity(m: re.Match[str]) -> str:
    """A named HTML 4 entity as HTML has it (an unknown name stays as written); a numeric one is
    that code point (&#153; is U+0099, not windows-1252's trade mark sign); a bare `&` is
    dropped."""
    ref = m.group(1)
    if not ref:
        return ""
    if ref[0] == "#":
        try:
            n = int(ref[2:-1], 16) if ref[1] in "xX" else int(ref[1:-1])
            return chr(n) if 0 < n < 0x110000 else "\ufffd"
        except ValueError:
            return ""
    cp = NAME_TO_CODEPOINT.get(ref[:-1])
    return chr(cp) if cp is not None else m.group(0)


_SPACE = " \t\n\r\v\f"


def snippet(text: str) -> str:
    """Dovecot 2.3's snippet state machine over decoded text. A line starting with `>` feeds a
    separate quoted snippet; blanks become one space, added only before a following character
    and only once the snippet has content (a blank after quoted text counts, and is then not
    shown); a space and a character need two of the MAX_CHARS, so a word that would start on
    the last one is left out. The quoted snippet is used when the text has nothing else."""
    bufs: dict[str, list[str]] = {"text": [], "quoted": []}
    left = {"text": MAX_CHARS, "quoted": MAX_CHARS}
    add_space = False
    newline = True
    target = "text"
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        i += 1
        if newline:
            newline = False
            target = "text"
            if c == ">":
                target = "quoted"
                if i >= n:
                    break
                c = text[i]
                i += 1
        buf = bufs[target]
        if c in ("\0", "\ufeff"):
            continue
        if c in _SPACE:
            if buf:
                add_space = True
            newline = c == "\n"
            continue
        if left[target] == 0:
            continue
        left[target] -= 1
        if add_space:
            if left[target] == 0:
                if target == "text":
                    break
                continue
            buf.append(" ")
            add_space = False
            left[target] -= 1
        buf.append(c)
        if left["text"] == 0:
            break
    out = "".join(bufs["text"]) or "".join(bufs["quoted"])
    return out.lstrip(" ")


def _utf8(data: bytes) -> str:
    """UTF-8, each run of what is not UTF-8 one U+FFFD (Dovecot's reading of unknown 8-bit)."""
    return re.sub("\ufffd+", "\ufffd", data.decode("utf-8", "replace"))


def decode(part: mimetree.Part, body: bytes) -> tuple[str, str]:
    """(text, subtype) of a leaf as Dovecot's message decoder reads it: Content-Type and
    Content-Transfer-Encoding from the part's own fields whether or not the message declares
    MIME-Version; no Content-Type is text/plain; us-ascii, a missing or unknown charset read
    as UTF-8; ISO-8859-1 strictly (not as windows-1252)."""
    ctype, subtype, params = "text", "plain", []
    raw_ct = part.field_value("Content-Type")
    if raw_ct is not None:
        ctype, subtype, params = mimetree.parse_content_type(raw_ct)
        ctype, subtype = ctype.lower() or "text", subtype.lower() or "plain"
    cte = (part.field_value("Content-Transfer-Encoding") or b"").strip().lower()
    try:
        if cte == b"base64":
            clean = re.sub(rb"[^A-Za-z0-9+/]", b"", body)
            if len(clean) % 4 == 1:  # a lone last character decodes to nothing
                clean = clean[:-1]
            body = base64.b64decode(clean + b"=" * (-len(clean) % 4))
        elif cte == b"quoted-printable":
            body = quopri.decodestring(body)
    except (binascii.Error, ValueError):
        pass
    charset = next((v for k, v in params if k.lower() == "charset"), "").strip().lower()
    if charset in ("iso-8859-1", "iso8859-1", "latin1", "latin-1"):
        return body.decode("latin-1"), subtype
    codec = charsets.text_codec(charset) if charset not in ("", "us-ascii", "utf-8", "utf8") else None
    if codec is not None:
        try:
            return body.decode(codec), subtype
        except (UnicodeDecodeError, LookupError):
            pass
    return _utf8(body), subtype if ctype == "text" else ""


def preview(root: mimetree.Part) -> str:
    part = first_leaf(root)
    raw_ct = part.field_value("Content-Type")
    if raw_ct is not None and mimetree.parse_content_type(raw_ct)[0].lower() not in ("text", ""):
        return ""
    text, subtype = decode(part, part.data[part.body_start:min(part.end, part.body_start + SCAN_BYTES)])
    if subtype == "html":
        text = html_text(text)
    return snippet(text)
