"""A message's MIME structure with exact byte ranges, for FETCH and SEARCH.

`parse(data)` takes the message with CRLF line ends (`to_crlf` first) and returns the root
`Part`. Boundaries are found in one pass over the lines, innermost multipart first, a line
counting as a delimiter when it starts with `--boundary` (as Dovecot does); the CRLF before
a delimiter belongs to the delimiter (RFC 2046 5.1.1). A multipart without a boundary is
treated as a single part. Nesting is bounded (MAX_DEPTH) so hostile input cannot recurse
without end, and so is the number of parts (MAX_PARTS, Dovecot's default too): past it, the
rest of a multipart is the body of its last part, opaque (anyone can mail a 7 MB message of
200,000 parts; its tree and BODYSTRUCTURE cost seconds of CPU).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailsift.store.maildir import to_crlf  # noqa: F401  (IMAP sizes and sections count CRLF)

MAX_DEPTH = 50
MAX_PARTS = 10_000  # parts of one message (all levels); Dovecot: max_total_mime_parts = 10000


@dataclass
class Part:
    data: bytes = field(repr=False)  # the whole message buffer (shared: not in every part's repr)
    start: int                 # offset of this part's header
    body_start: int            # offset of its body (after the blank line)
    end: int                   # offset after its body
    fields: list[tuple[str, bytes]]  # (name, raw lines incl. folds and final CRLF), in order
    ctype: str = "text"        # lower case
    subtype: str = "plain"     # lower case
    params: list[tuple[str, str]] = field(default_factory=list)  # names as written
    type_text: tuple[str, str] = ("text", "plain")  # type and subtype as written
    ctype_given: bool = False  # a Content-Type field was present
    children: list["Part"] = field(default_factory=list)
    message: "Part | None" = None  # the encapsulated message of a message/rfc822 part
    mime: bool = True          # Content-* fields count (a message root without MIME-Version
                               # and Content-Type is plain text whatever else it says)
    _lower: list[str] | None = field(default=None, repr=False, compare=False)
    # HEADER.FIELDS answers already computed for this part (perf: clients ask the same few
    # fields of the same cached headers on every listing); small and bounded (sections.py).
    _memo: dict[tuple[str, frozenset[str]], bytes] | None = field(default=None, repr=False, compare=False)
    # BODY / BODYSTRUCTURE of this (root) part as encoded (bodystructure.encoded_structure)
    _structure: dict[bool, bytes] | None = field(default=None, repr=False, compare=False)

    def lower_names(self) -> list[str]:
        """The field names in lower case, computed once (perf: HEADER.FIELDS lowered every
        name of every message on each FETCH; cached headers keep the list)."""
        if self._lower is None:
            self._lower = [name.lower() for name, _raw in self.fields]
        return self._lower

    @property
    def header(self) -> bytes:
        return self.data[self.start:self.body_start]

    @property
    def body(self) -> bytes:
        return self.data[self.body_start:self.end]

    @property
    def raw(self) -> bytes:
        return self.data[self.start:self.end]

    @property
    def is_multipart(self) -> bool:
        return self.ctype == "multipart" and bool(self.children)

    @property
    def header_terminator(self) -> bytes:
        """The blank line ending the header, or b"" when it has none."""
        h = self.header
        if h.endswith(b"\r\n\r\n") or h == b"\r\n":
            return b"\r\n"
        return b""

    def field_values(self, name: str) -> list[bytes]:
        lname = name.lower()
        return [unfold_value(raw) for n, raw in self.fields if n.lower() == lname]

    def field_value(self, name: str) -> bytes | None:
        values = self.field_values(name)
        return values[0] if values else None

    def content_field(self, name: str) -> bytes | None:
        """A Content-* field's value as MIME reads it (first occurrence)."""
        return self.field_value(name) if self.mime else None

    def param(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.params:
            if k.lower() == lname:
                return v
        return None


def unfold_value(raw: bytes) -> bytes:
    """The value of a raw header field as Dovecot reads it: after the colon, the first line's
    leading blanks removed, every CR and LF removed, trailing blanks kept."""
    colon = raw.find(b":")
    value = raw[colon + 1:] if colon >= 0 else b""
    return value.lstrip(b" \t").replace(b"\r", b"").replace(b"\n", b"")


_FIELD_START = re.compile(rb"(?<=\n)(?![ \t])")


def parse_fields(header: bytes) -> list[tuple[str, bytes]]:
    """Header fields as (name, raw lines incl. folds and CRLF), up to the first blank line. A line
    without a colon is a field named by the whole line (Dovecot keeps it in HEADER.FIELDS.NOT)."""
    if header[:1] == b"\n" or header[:2] == b"\r\n":
        return []
    end = header.find(b"\n\r\n")
    if end < 0:
        end = header.find(b"\n\n")
    if end >= 0:
        header = header[:end + 1]
    fields: list[tuple[str, bytes]] = []
    for chunk in _FIELD_START.split(header):
        if not chunk:
            continue
        if chunk[:1] in (b" ", b"\t") and fields:  # a fold before any field name: keep with the last
            name, raw = fields[-1]
            fields[-1] = (name, raw + chunk)
            continue
        nl = chunk.find(b"\n")
        first = chunk if nl < 0 else chunk[:nl]
        colon = first.find(b":")
        name = (first[:colon].rstrip(b" \t") if colon > 0 else first.rstrip(b"\r")).decode("latin-1")
        fields.append((name, chunk))
    return fields


_TOKEN = rb"[^\x00-\x20()<>@,;:\\\"/\[\]?=\x7f]+"


def parse_content_type(value: bytes) -> tuple[str, str, list[tuple[str, str]]]:
    """`type/subtype; k=v; ...` -> (type, subtype, params) as Dovecot reads it: a type alone
    gives an empty subtype; anything malformed gives ("", "", [])."""
    text = strip_comments(value)
    m = re.match(rb"[ \t]*(" + _TOKEN + rb")[ \t]*", text)
    if not m:
        return "", "", []
    ctype = m.group(1).decode("latin-1")
    pos = m.end()
    if pos == len(text):
        return ctype, "", []
    if text[pos] == 0x3B:  # ;
        return ctype, "", parse_params(text[pos:])
    if text[pos] != 0x2F:  # /
        return "", "", []
    m = re.compile(rb"[ \t]*(" + _TOKEN + rb")[ \t]*").match(text, pos + 1)
    if not m:
        return "", "", []
    subtype = m.group(1).decode("latin-1")
    pos = m.end()
    if pos < len(text) and text[pos] != 0x3B:
        return "", "", []
    return ctype, subtype, parse_params(text[pos:])


def strip_comments(value: bytes) -> bytes:
    """Remove (comments) outside quoted strings."""
    if b"(" not in value:
        return value
    out = bytearray()
    depth = 0
    in_quote = False
    i = 0
    while i < len(value):
        c = value[i]
        if in_quote:
            out.append(c)
            if c == 0x5C and i + 1 < len(value):
                out.append(value[i + 1])
                i += 1
            elif c == 0x22:
                in_quote = False
        elif depth:
            if c == 0x5C:
                i += 1
            elif c == 0x28:
                depth += 1
            elif c == 0x29:
                depth -= 1
        elif c == 0x28:
            depth = 1
        else:
            out.append(c)
            if c == 0x22:
                in_quote = True
        i += 1
    return bytes(out)


def parse_params(text: bytes) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    pos = 0
    n = len(text)
    while pos < n:
        semi = text.find(b";", pos)
        if semi < 0:
            break
        pos = semi + 1
        m = re.compile(rb"\s*(" + _TOKEN + rb")\s*=\s*").match(text, pos)
        if not m:
            continue
        name = m.group(1).decode("latin-1")
        pos = m.end()
        if pos < n and text[pos] == 0x22:
            val = bytearray()
            pos += 1
            while pos < n and text[pos] != 0x22:
                if text[pos] == 0x5C and pos + 1 < n:
                    pos += 1
                val.append(text[pos])
                pos += 1
            pos += 1
            value = bytes(val)
        else:
            m2 = re.compile(_TOKEN + rb"|").match(text, pos)
            assert m2 is not None
            value = m2.group(0)
            pos = m2.end()
        params.append((name, value.decode("utf-8", "surrogateescape")))
    return merge_rfc2231(params)


_CONT = re.compile(r"^(.+?)\*(\d+)(\*?)$")


def merge_rfc2231(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Join RFC 2231 continuations (`name*0`, `name*1*`) into one parameter, as Dovecot does:
    plain continuations give `name`, encoded ones `name*` with the value left encoded."""
    if not any("*" in k for k, _ in params):
        return params
    plain: list[tuple[str, str]] = []
    groups: dict[str, list[tuple[int, bool, str]]] = {}
    order: list[str] = []
    for k, v in params:
        m = _CONT.match(k)
        if not m:
            plain.append((k, v))
            continue
        base = m.group(1).lower()
        if base not in groups:
            groups[base] = []
            order.append(base)
        groups[base].append((int(m.group(2)), bool(m.group(3)), v))
    for base in order:
        segs = sorted(groups[base])
        extended = any(e for _, e, _ in segs)
        name = next(k for k, _ in params if _CONT.match(k) and _CONT.match(k).group(1).lower() == base)  # type: ignore[union-attr]
        name = _CONT.match(name).group(1)  # type: ignore[union-attr]
        plain.append((name + ("*" if extended else ""), "".join(v for _, _, v in segs)))
    return plain


class _Parser:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.n = len(data)
        self.parts = 0  # parts made so far (MAX_PARTS)

    def line_end(self, pos: int) -> int:
        eol = self.data.find(b"\n", pos)
        return self.n if eol < 0 else eol + 1

    def match_boundary(self, pos: int, boundaries: list[bytes]) -> tuple[int, bool] | None:
        """When the line at pos is a delimiter: (index into boundaries, closing)."""
        d = self.data
        if not d.startswith(b"--", pos):
            return None
        for i in range(len(boundaries) - 1, -1, -1):
            b = boundaries[i]
            if d.startswith(b, pos + 2):
                return i, d.startswith(b"--", pos + 2 + len(b))
        return None

    def delimiter_start(self, line_pos: int, floor: int) -> int:
        """Where the body before a delimiter line ends (its preceding CRLF belongs to it)."""
        if line_pos - 2 >= floor and self.data[line_pos - 2:line_pos] == b"\r\n":
            return line_pos - 2
        if line_pos - 1 >= floor and self.data[line_pos - 1:line_pos] == b"\n":
            return line_pos - 1
        return line_pos

    def part(self, pos: int, boundaries: list[bytes], default: tuple[str, str],
             depth: int, is_message: bool = False) -> tuple[Part, int, tuple[int, bool] | None]:
        """Parse a part starting at pos. Returns it, the position after it (at the delimiter line
        that ended it, or EOF), and the delimiter match that ended it."""
        start = pos
        self.parts += 1
        # header
        hit: tuple[int, bool] | None = None
        while pos < self.n:
            if boundaries:
                hit = self.match_boundary(pos, boundaries)
                if hit is not None:
                    break
            le = self.line_end(pos)
            line = self.data[pos:le]
            pos = le
            if line in (b"\r\n", b"\n"):
                break
        body_start = pos
        if hit is not None:  # a delimiter inside the header: it takes the CRLF before it
            body_start = max(start, self.delimiter_start(pos, start))
        fields = parse_fields(self.data[start:body_start])
        part = Part(self.data, start, body_start, body_start, fields)
        part.ctype, part.subtype = default
        part.type_text = default
        ct_values = [unfold_value(raw) for name, raw in fields if name.lower() == "content-type"]
        if is_message and not ct_values and not any(n.lower() == "mime-version" for n, _ in fields):
            part.mime = False
        if ct_values:
            parsed = parse_content_type(ct_values[0])
            part.type_text = (parsed[0], parsed[1])
            part.ctype, part.subtype, part.params = parsed[0].lower(), parsed[1].lower(), parsed[2]
            part.ctype_given = True
        if part.ctype == "text" and part.param("charset") is None:
            part.params = part.params + [("charset", "us-ascii")]
        if hit is not None:
            if part.ctype == "multipart":
                self.empty_child(part)
            return part, pos, hit

        boundary = part.param("boundary") if part.ctype == "multipart" else None
        if part.ctype == "multipart" and boundary and depth < MAX_DEPTH:
            return self.multipart(part, pos, boundaries, boundary.encode("utf-8", "surrogateescape"), depth)
        if part.ctype == "multipart":
            self.empty_child(part)
        if part.ctype == "message" and part.subtype == "rfc822" and depth < MAX_DEPTH:
            inner, after, hit = self.part(pos, boundaries, ("text", "plain"), depth + 1, True)
            part.message = inner
            part.end = inner.end
            return part, after, hit
        # a leaf: up to the next delimiter of any enclosing multipart
        while pos < self.n:
            if boundaries:
                hit = self.match_boundary(pos, boundaries)
                if hit is not None:
                    # the CRLF before the delimiter is its own, even the header's blank line
                    cut = self.delimiter_start(pos, start)
                    part.body_start = min(part.body_start, cut)
                    part.end = max(part.body_start, cut)
                    return part, pos, hit
            pos = self.line_end(pos)
        part.end = self.n
        return part, pos, None

    def opaque_rest(self, part: Part, pos: int, stack: list[bytes],
                    me: int) -> tuple[int, tuple[int, bool] | None]:
        """Past MAX_PARTS, at a delimiter of `part`: no more parts are made; everything up to its
        closing delimiter (or an enclosing one, or EOF) becomes the body of its last part."""
        hit: tuple[int, bool] | None = None
        while pos < self.n:
            pos = self.line_end(pos)
            hit = self.match_boundary(pos, stack) if pos < self.n else None
            if hit is not None and (hit[0] != me or hit[1]):
                break
            hit = None
        if part.children:
            last = part.children[-1]
            last.end = max(last.body_start, self.delimiter_start(pos, last.body_start)) if hit else self.n
        return pos, hit

    def empty_child(self, part: Part) -> None:
        """A multipart without a (usable) boundary holds one empty text/plain part (Dovecot)."""
        child = Part(self.data, self.n, self.n, self.n, [])
        child.params = [("charset", "us-ascii")]
        part.children.append(child)

    def multipart(self, part: Part, pos: int, boundaries: list[bytes], boundary: bytes,
                  depth: int) -> tuple[Part, int, tuple[int, bool] | None]:
        stack = boundaries + [boundary]
        me = len(stack) - 1
        child_default = ("message", "rfc822") if part.subtype == "digest" else ("text", "plain")
        # preamble
        hit = None
        while pos < self.n:
            hit = self.match_boundary(pos, stack)
            if hit is not None:
                break
            pos = self.line_end(pos)
        while hit is not None and hit[0] == me and not hit[1]:
            if self.parts >= MAX_PARTS:
                pos, hit = self.opaque_rest(part, pos, stack, me)
                break
            pos = self.line_end(pos)  # skip the delimiter line
            child, pos, hit = self.part(pos, stack, child_default, depth + 1)
            part.children.append(child)
        if not part.children:
            self.empty_child(part)
        if hit is not None and hit[0] == me and hit[1]:
            # closing delimiter: the epilogue runs to an enclosing delimiter or EOF
            pos = self.line_end(pos)
            epilogue = pos
            hit = None
            while pos < self.n:
                if boundaries:
                    hit = self.match_boundary(pos, boundaries)
                    if hit is not None:
                        part.end = max(epilogue, self.delimiter_start(pos, epilogue))
                        return part, pos, hit
                pos = self.line_end(pos)
            part.end = self.n
            return part, pos, None
        if hit is not None:  # an enclosing delimiter ended us
            part.end = max(part.body_start, self.delimiter_start(pos, part.body_start))
            return part, pos, hit
        part.end = self.n
        return part, pos, None


def parse_top(data: bytes) -> Part:
    """Only the top-level header (for FETCH of header sections: no MIME walk over the body)."""
    i = data.find(b"\r\n\r\n")
    if data.startswith(b"\r\n"):
        body_start = 2
    elif i < 0:
        body_start = len(data)
    else:
        body_start = i + 4
    return Part(data, 0, body_start, len(data), parse_fields(data[:body_start]))


def parse(data: bytes) -> Part:
    """The MIME tree of a message (CRLF line ends expected)."""
    root, _, _ = _Parser(data).part(0, [], ("text", "plain"), 0, True)
    root.end = len(data)
    return root
