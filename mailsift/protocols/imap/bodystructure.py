"""BODY and BODYSTRUCTURE (RFC 3501 7.4.2) computed from a message's MIME tree."""

from __future__ import annotations

from typing import Any

from mailsift.protocols.imap.envelope import envelope
from mailsift.protocols.imap.mimetree import Part, parse_params, strip_comments


def body_structure(part: Part, extended: bool = True, root: bool = True) -> list[Any]:
    """BODYSTRUCTURE (extended=True) or BODY (extended=False) of `part` as response values."""
    if part.is_multipart:
        out = _Multi(body_structure(c, extended, False) for c in part.children)
        out.nchildren = len(part.children)
        out.append(part.type_text[1].encode("latin-1"))
        if extended:
            out.append(_params(part.params))
            out.extend(_extension(part))
        return out
    return _single(part, extended, root)


def encoded_structure(root: Part, extended: bool = True) -> bytes:
    """BODYSTRUCTURE (or BODY) of a message, encoded, kept on its root part: computed once, in
    a worker thread (fetch.prepare), then only copied out on the event loop."""
    memo = root._structure
    if memo is None:
        memo = root._structure = {}
    out = memo.get(extended)
    if out is None:
        out = memo[extended] = encode_body(body_structure(root, extended))
    return out


class _Multi(list):  # type: ignore[type-arg]
    """A multipart body: its children are written without separating spaces."""
    nchildren = 0


def _params(params: list[tuple[str, str]]) -> list[bytes] | None:
    if not params:
        return None
    out: list[bytes] = []
    for k, v in params:
        out.append(k.encode("utf-8", "surrogateescape"))
        out.append(v.encode("utf-8", "surrogateescape"))
    return out


def _lines(body: bytes) -> int:
    return body.count(b"\n")


_PLAIN_FIELDS = ("content-id", "content-description", "content-md5", "content-disposition",
                 "content-language", "content-location")


def is_plain_7bit(part: Part) -> bool:
    """A message that is text/plain; charset=us-ascii, 7bit, nothing else: Dovecot writes it in
    canonical case."""
    if not part.mime:
        return True
    if part.ctype != "text" or part.subtype != "plain":
        return False
    if len(part.params) != 1 or part.params[0][0].lower() != "charset" or part.params[0][1].lower() != "us-ascii":
        return False
    enc = part.field_value("Content-Transfer-Encoding")
    if enc is not None and strip_comments(enc).strip().lower() != b"7bit":
        return False
    return not any(name.lower() in _PLAIN_FIELDS for name, _ in part.fields)


def _single(part: Part, extended: bool, root: bool) -> list[Any]:
    body = part.body
    if root and is_plain_7bit(part):
        out_p: list[Any] = [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit",
                            len(body), _lines(body)]
        if extended:
            out_p += [None, None, None, None]
        return out_p
    enc = part.content_field("Content-Transfer-Encoding")
    enc_v = strip_comments(enc).strip() if enc else b""
    out: list[Any] = [part.type_text[0].encode("latin-1"), part.type_text[1].encode("latin-1"),
                      _params(part.params), part.content_field("Content-ID"),
                      part.content_field("Content-Description"), enc_v or b"7bit", len(body)]
    if part.ctype == "text":
        out.append(_lines(body))
    elif part.ctype == "message" and part.subtype == "rfc822" and part.message is not None:
        out.append(envelope(part.message))
        out.append(body_structure(part.message, extended, False))
        out.append(_lines(body))
    if extended:
        out.append(part.content_field("Content-MD5"))
        out.extend(_extension(part))
    return out


def _extension(part: Part) -> list[Any]:
    dsp_v = part.content_field("Content-Disposition")
    dsp: list[Any] | None = None
    if dsp_v is not None:
        text = strip_comments(dsp_v).strip()
        semi = text.find(b";")
        kind = (text if semi < 0 else text[:semi]).strip()
        if kind:
            dsp = [kind, _params(parse_params(text[semi:]) if semi >= 0 else [])]
    lang_v = part.content_field("Content-Language")
    lang: Any = None
    if lang_v is not None:
        langs = [x.strip() for x in strip_comments(lang_v).split(b",") if x.strip()]
        lang = langs or None
    return [dsp, lang, part.content_field("Content-Location")]


def encode_body(value: Any) -> bytes:
    """Encode a body structure; multipart children are concatenated without spaces."""
    from mailsift.protocols.imap import response
    if isinstance(value, _Multi):
        children = value[:value.nchildren]
        rest = value[value.nchildren:]
        head = b"".join(encode_body(c) for c in children)
        tail = b"".join(b" " + _enc(v) for v in rest)
        return b"(" + head + tail + b")"
    if isinstance(value, list):
        return b"(" + b" ".join(_enc(v) for v in value) + b")"
    return response.encode(value)


def _enc(value: Any) -> bytes:
    if isinstance(value, list):
        return encode_body(value)
    from mailsift.protocols.imap import response
    return response.encode(value)
