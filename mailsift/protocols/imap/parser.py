"""Parsing IMAP4rev1 commands (RFC 3501 section 9) from bytes.

A command arrives as a line, possibly ending in a literal marker `{n}` / `{n+}` (LITERAL+),
then n octets and the rest of the command. The session reads the pieces (`literal_marker`
tells it when a line announces a literal and how big; `Limits` bounds them) and hands the
whole command, literals inlined with their CRLF, to `parse_command`.

Every syntax error raises ParseError carrying the tag when one was recognised, so the session
can answer `TAG BAD ...` (or `* BAD ...`) and go on.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Union

from mailsift.protocols.imap import mutf7, rev2


class ParseError(ValueError):
    """The command is not valid IMAP; answer BAD."""

    def __init__(self, message: str, tag: bytes | None = None) -> None:
        super().__init__(message)
        self.tag = tag


@dataclass(frozen=True)
class Limits:
    max_line: int = 64 * 1024          # one line of a command, without literals
    max_literal: int = 64 * 1024 * 1024  # one APPEND literal
    max_command: int = 64 * 1024 * 1024 + 256 * 1024  # a whole command with its literals
    # {n+} beyond this: BAD [TOOBIG] (swallowed unread). Clients that see LITERAL+ (mbsync)
    # APPEND whole messages with it: 32 MiB passes what Postfix accepts by default (10 MB).
    max_nonsync_literal: int = 32 * 1024 * 1024
    max_prelogin_literal: int = 8 * 1024  # one literal before login (a user name or password)
    max_prelogin_command: int = 64 * 1024  # a whole command with its literals before login


_MARKER = re.compile(rb"\{(\d{1,20})(\+?)\}$")


def literal_marker(line: bytes) -> tuple[int, bool] | None:
    """When `line` (without its CRLF) ends by announcing a literal, (size, non_synchronizing)."""
    m = _MARKER.search(line)
    if not m:
        return None
    return int(m.group(1)), bool(m.group(2))


# ---------------------------------------------------------------------------------------------
# Tokens

@dataclass(frozen=True)
class Atom:
    text: str


@dataclass(frozen=True)
class String:
    data: bytes
    literal: bool = False


Token = Union[Atom, String, "list[Token]"]

_CTL = set(range(0x00, 0x20)) | {0x7F}
_ATOM_STOP = set(b'(){ "\\') | _CTL | {0x20}
# the only atoms in which `[` opens a section that may hold spaces and parentheses; anywhere
# else `[` is an ordinary atom character (RFC 3501 9: a mailbox name may hold it)
_SECTION_ATTS = {b"BODY", b"BODY.PEEK", b"BINARY", b"BINARY.PEEK", b"BINARY.SIZE"}
# an optional leading backslash (a flag), then atom bytes up to a stop byte or `[`
_ATOM_RUN = re.compile(rb'\\?[^\x00-\x20\x7f(){"\\\[]*')
_ATOM_REST = re.compile(rb'[^\x00-\x20\x7f(){"\\]*')  # atom bytes, `[` and `]` among them
_FLAT_SECTION = re.compile(rb'\[[^\x00-\x1f\x7f\[\]]*\]')  # `[...]` without brackets or CTLs inside
_TOKEN_OPENERS = frozenset(b'("{~')  # what token() reads other than an atom


class _Tokenizer:
    def __init__(self, data: bytes, tag: bytes | None = None, adjacent_lists: bool = False) -> None:
        self.data = data
        self.pos = 0
        self.tag = tag
        self.adjacent_lists = adjacent_lists  # `(a)(b)` as in a multipart BODYSTRUCTURE

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.tag)

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def expect_space(self) -> None:
        if self.peek() != 0x20:
            raise self.error("expected a space")
        self.pos += 1

    def tokens(self, closing: int | None = None) -> list[Token]:
        """Space-separated tokens up to the end (or up to a closing paren)."""
        out: list[Token] = []
        data = self.data
        end = len(data)
        first = True
        while True:
            pos = self.pos
            if pos >= end:
                if closing is not None:
                    raise self.error("unbalanced parentheses")
                return out
            c = data[pos]
            if c == closing:
                self.pos = pos + 1
                return out
            if not first and not (self.adjacent_lists and c == 0x28 and isinstance(out[-1], list)):
                if c != 0x20:
                    raise self.error("expected a space")
                pos += 1
                self.pos = pos
                if pos >= end or data[pos] == 0x20 or data[pos] == closing:
                    raise self.error("unexpected space")
                c = data[pos]
            # (perf: the common atom is read here, without token()'s dispatch)
            out.append(self.token() if c in _TOKEN_OPENERS else self.atom())
            first = False

    def token(self) -> Token:
        c = self.peek()
        if c is None:
            raise self.error("missing argument")
        if c == 0x28:  # (
            self.pos += 1
            return self.tokens(closing=0x29)
        if c == 0x22:  # "
            return self.quoted()
        if c == 0x7B:  # {
            return self.literal()
        if c == 0x7E and self.data[self.pos + 1:self.pos + 2] == b"{":  # ~{n}: literal8 (RFC 3516)
            self.pos += 1
            return self.literal()
        return self.atom()

    def quoted(self) -> String:
        self.pos += 1
        out = bytearray()
        while True:
            c = self.peek()
            if c is None:
                raise self.error("unterminated quoted string")
            self.pos += 1
            if c == 0x22:
                return String(bytes(out))
            if c == 0x5C:  # backslash
                c = self.peek()
                if c not in (0x22, 0x5C):
                    raise self.error("invalid escape in quoted string")
                self.pos += 1
            elif c in (0x0D, 0x0A, 0x00):
                raise self.error("CR, LF or NUL in quoted string")
            out.append(c)

    def literal(self) -> String:
        m = re.compile(rb"\{(\d{1,20})\+?\}\r\n").match(self.data, self.pos)
        if not m:
            raise self.error("invalid literal")
        n = int(m.group(1))
        start = m.end()
        if start + n > len(self.data):
            raise self.error("literal shorter than announced")
        self.pos = start + n
        return String(self.data[start:start + n], literal=True)

    def atom(self) -> Atom:
        data, start = self.data, self.pos
        # (perf: an atom without `[` is one regex match, not a loop over its bytes)
        run = _ATOM_RUN.match(data, start)
        assert run is not None  # (the pattern matches the empty string)
        end = run.end()
        if end < len(data) and data[end] == 0x5B:  # `[`
            if data[start:end].upper() in _SECTION_ATTS:  # BODY[...]: a section
                section = _FLAT_SECTION.match(data, end)
                if section is None:  # nested brackets, or none closing: the loop below
                    return self._atom_with_brackets()
                end = section.end()
            # past the first `[`, `[` and `]` are ordinary atom bytes (see _atom_with_brackets)
            run = _ATOM_REST.match(data, end)
            assert run is not None
            end = run.end()
        self.pos = end
        return self._atom_of(start, end)

    def _atom_with_brackets(self) -> Atom:
        start = self.pos
        depth = 0
        if self.peek() == 0x5C:  # a flag: \Seen
            self.pos += 1
        while self.pos < len(self.data):
            c = self.data[self.pos]
            if c == 0x5B and (depth or self.data[start:self.pos].upper() in _SECTION_ATTS):
                depth += 1  # BODY[...]: a section, may hold spaces and parens
            elif c == 0x5D and depth:
                depth -= 1
            elif depth and c not in _CTL:
                pass
            elif c in _ATOM_STOP:
                break
            self.pos += 1
        if depth:
            raise self.error("unbalanced [")
        return self._atom_of(start, self.pos)

    def _atom_of(self, start: int, end: int) -> Atom:
        if end == start or self.data[start:end] == b"\\":
            if end != start:
                raise self.error("empty flag name")
            raise self.error(f"unexpected character {chr(self.data[start])!r}")
        try:
            return Atom(self.data[start:end].decode("ascii"))
        except UnicodeDecodeError:
            raise self.error("8-bit character in atom") from None


def tokenize(data: bytes) -> list[Token]:
    return _Tokenizer(data).tokens()


# ---------------------------------------------------------------------------------------------
# Sequence sets

@dataclass(frozen=True)
class SequenceSet:
    """`1:3,5,7:*`; None stands for `*` (the largest number in use). A line may hold some 16,000
    ranges (`1:*,1:*,...`): they are merged into disjoint ones, never expanded into numbers."""
    ranges: tuple[tuple[int | None, int | None], ...]
    _merged: dict[int, list[tuple[int, int]]] = field(default_factory=dict, compare=False, repr=False)

    def contains(self, n: int, largest: int) -> bool:
        merged = self.resolve(largest)
        i = bisect.bisect_right(merged, (n, 0xFFFFFFFF + 1)) - 1
        return i >= 0 and merged[i][0] <= n <= merged[i][1]

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The ranges with `*` replaced by `largest`, each ordered low-high, sorted and merged
        (overlapping and adjacent ones joined): O(r log r) for r ranges, whatever they span."""
        cached = self._merged.get(largest)
        if cached is not None:
            return cached
        spans = sorted((min(a, b), max(a, b)) for a, b in
                       ((largest if lo is None else lo, largest if hi is None else hi) for lo, hi in self.ranges))
        out: list[tuple[int, int]] = []
        for a, b in spans:
            if out and a <= out[-1][1] + 1:
                if b > out[-1][1]:
                    out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
        if len(self._merged) >= 4:  # SEARCH asks with one or two values of `largest`
            self._merged.clear()
        self._merged[largest] = out
        return out

    def has_star(self) -> bool:
        return any(lo is None or hi is None for lo, hi in self.ranges)


@dataclass(frozen=True)
class SavedResult(SequenceSet):
    """`$` (SEARCHRES, RFC 5182): the UIDs the last SEARCH RETURN (SAVE) found. The session
    binds it to those messages before the command runs; unbound it matches nothing."""
    ranges: tuple[tuple[int | None, int | None], ...] = ()


_SEQ_RE = re.compile(r"^(\d+|\*)(?::(\d+|\*))?$")


def parse_sequence_set(text: str, tag: bytes | None = None) -> SequenceSet:
    if text.isdigit() and text.isascii():  # (perf: one number, the commonest set)
        v = int(text)
        if v == 0 or v > 0xFFFFFFFF:
            raise ParseError(f"invalid number {text} in sequence set", tag)
        return SequenceSet(((v, v),))
    if text == "$":
        return SavedResult()
    ranges: list[tuple[int | None, int | None]] = []
    if not text:
        raise ParseError("empty sequence set", tag)
    for item in text.split(","):
        m = _SEQ_RE.match(item)
        if not m:
            raise ParseError(f"invalid sequence set {text!r}", tag)
        nums = []
        for g in (m.group(1), m.group(2) if m.group(2) is not None else m.group(1)):
            if g == "*":
                nums.append(None)
            else:
                v = int(g)
                if v == 0 or v > 0xFFFFFFFF:
                    raise ParseError(f"invalid number {g} in sequence set", tag)
                nums.append(v)
        ranges.append((nums[0], nums[1]))
    return SequenceSet(tuple(ranges))


# ---------------------------------------------------------------------------------------------
# Fetch attributes

@dataclass(frozen=True)
class Section:
    part: tuple[int, ...] = ()
    text: str | None = None  # HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple[str, ...] = ()
    spec: str = ""           # as the client wrote it, echoed in the response


@dataclass(frozen=True)
class FetchAtt:
    name: str                       # ENVELOPE FLAGS INTERNALDATE RFC822 RFC822.HEADER RFC822.SIZE
                                    # RFC822.TEXT BODY BODYSTRUCTURE UID MODSEQ BODY[] (section set)
    section: Section | None = None  # for BODY[...] / BODY.PEEK[...]
    partial: tuple[int, int] | None = None
    peek: bool = False

    @property
    def sets_seen(self) -> bool:
        return (self.section is not None and not self.peek) or self.name in ("RFC822", "RFC822.TEXT")

    def response_name(self) -> str:
        if self.name in ("BINARY[]", "BINARY.SIZE") and self.section is not None:  # RFC 3516
            s = f"{self.name[:-2] if self.name == 'BINARY[]' else self.name}[{self.section.spec}]"
            return s + (f"<{self.partial[0]}>" if self.partial is not None else "")
        if self.section is None:
            return self.name
        s = f"BODY[{self.section.spec}]"
        if self.partial is not None:
            s += f"<{self.partial[0]}>"
        return s


_SIMPLE_ATTS = {"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ"}
_SIMPLE_ATTS |= {"PREVIEW"}  # RFC 8970
_SIMPLE_ATTS |= {"SAVEDATE"}  # RFC 8514
_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_BODY_ATT = re.compile(r"^(BODY(?:\.PEEK)?)\[(.*)\](?:<(\d+)\.(\d+)>)?$", re.S | re.I)
_PART_RE = re.compile(r"^(\d+(?:\.\d+)*)(?:\.(.*))?$", re.S)


def parse_section(spec: str, tag: bytes | None = None) -> Section:
    part: tuple[int, ...] = ()
    rest = spec
    m = _PART_RE.match(spec)
    if m:
        part = tuple(int(p) for p in m.group(1).split("."))
        if any(p == 0 or p > 0xFFFFFFFF for p in part):
            raise ParseError("section part numbers start at 1", tag)
        rest = m.group(2) or ""
        if m.group(2) is None:
            return Section(part=part, spec=spec)
        if rest == "":
            raise ParseError(f"invalid section {spec!r}", tag)
    if rest == "":
        return Section(spec=spec)
    upper = rest.upper()
    if upper in ("HEADER", "TEXT"):
        return Section(part=part, text=upper, spec=spec)
    if upper == "MIME":
        if not part:
            raise ParseError("MIME needs a part number", tag)
        return Section(part=part, text="MIME", spec=spec)
    fm = re.match(r"^(HEADER\.FIELDS(?:\.NOT)?) \((.*)\)$", rest, re.S | re.I)
    if fm:
        tok = _Tokenizer(fm.group(2).encode("latin-1"), tag)
        names: list[str] = []
        for t in tok.tokens():
            if isinstance(t, Atom):
                names.append(t.text)
            elif isinstance(t, String):
                names.append(t.data.decode("ascii", "replace"))
            else:
                raise ParseError("invalid header field list", tag)
            if not names[-1] or any(c in names[-1] for c in ": \t"):
                raise ParseError("invalid header field name", tag)
        if not names:
            raise ParseError("empty header field list", tag)
        return Section(part=part, text=fm.group(1).upper(), fields=tuple(names), spec=spec)
    raise ParseError(f"invalid section {spec!r}", tag)


_BINARY_ATT = re.compile(r"^BINARY(\.PEEK|\.SIZE)?\[((?:[1-9]\d*)(?:\.[1-9]\d*)*)?\](?:<(\d+)\.(\d+)>)?$", re.I)


def _binary_att(m: re.Match[str], tag: bytes | None) -> FetchAtt:
    """BINARY[part]<partial>, BINARY.PEEK[part]<partial>, BINARY.SIZE[part] (RFC 3516)."""
    kind = (m.group(1) or "").upper()
    spec = m.group(2) or ""
    part = tuple(int(p) for p in spec.split(".")) if spec else ()
    if any(p > 0xFFFFFFFF for p in part):
        raise ParseError("invalid section part", tag)
    partial = None
    if m.group(3) is not None:
        if kind == ".SIZE":
            raise ParseError("BINARY.SIZE takes no partial", tag)
        start, length = int(m.group(3)), int(m.group(4))
        if start > 0xFFFFFFFF or length == 0 or length > 0xFFFFFFFF:
            raise ParseError("invalid partial", tag)
        partial = (start, length)
    return FetchAtt("BINARY.SIZE" if kind == ".SIZE" else "BINARY[]", section=Section(part=part, spec=spec),
                    partial=partial, peek=kind != "")


_FETCH_ATT_CACHE: dict[str, FetchAtt] = {}  # text -> its FetchAtt (frozen, so shared)
_FETCH_ATT_CACHE_SIZE = 512


def parse_fetch_att(text: str, tag: bytes | None = None) -> FetchAtt:
    # (perf: a client asks for the same few attributes again and again; a section such as
    # BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)] costs regexes and a tokenizer to parse)
    att = _FETCH_ATT_CACHE.get(text)
    if att is None:
        att = _parse_fetch_att(text, tag)  # a ParseError is raised, never cached
        if len(_FETCH_ATT_CACHE) >= _FETCH_ATT_CACHE_SIZE:
            _FETCH_ATT_CACHE.clear()
        _FETCH_ATT_CACHE[text] = att
    return att


def _parse_fetch_att(text: str, tag: bytes | None) -> FetchAtt:
    upper = text.upper()
    if upper in _SIMPLE_ATTS:
        return FetchAtt(upper)
    bm = _BINARY_ATT.match(text)
    if bm:
        return _binary_att(bm, tag)
    m = _BODY_ATT.match(text)
    if not m:
        raise ParseError(f"unknown fetch attribute {text!r}", tag)
    partial = None
    if m.group(3) is not None:
        start, length = int(m.group(3)), int(m.group(4))
        if start > 0xFFFFFFFF or length == 0 or length > 0xFFFFFFFF:
            raise ParseError("invalid partial", tag)
        partial = (start, length)
    section = parse_section(m.group(2), tag)
    return FetchAtt("BODY[]", section=section, partial=partial, peek=m.group(1).upper() == "BODY.PEEK")


def parse_fetch_atts(tok: Token, tag: bytes | None = None) -> list[FetchAtt]:
    if isinstance(tok, Atom):
        upper = tok.text.upper()
        if upper in _MACROS:
            return [FetchAtt(n) for n in _MACROS[upper]]
        return [parse_fetch_att(tok.text, tag)]
    if isinstance(tok, list):
        if not tok:
            raise ParseError("empty fetch attribute list", tag)
        out = []
        for t in tok:
            if isinstance(t, list) and out and out[-1].name == "PREVIEW":  # PREVIEW (LAZY), RFC 8970
                if [m.text.upper() if isinstance(m, Atom) else m for m in t] != ["LAZY"]:
                    raise ParseError("PREVIEW takes only the LAZY modifier", tag)
                continue
            if not isinstance(t, Atom):
                raise ParseError("invalid fetch attribute", tag)
            out.append(parse_fetch_att(t.text, tag))
        return out
    raise ParseError("invalid fetch attributes", tag)


# ---------------------------------------------------------------------------------------------
# Dates

_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def parse_date(text: str, tag: bytes | None = None) -> _dt.date:
    m = re.match(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$", text)
    if not m or m.group(2).upper() not in _MONTHS:
        raise ParseError(f"invalid date {text!r}", tag)
    try:
        return _dt.date(int(m.group(3)), _MONTHS.index(m.group(2).upper()) + 1, int(m.group(1)))
    except ValueError:
        raise ParseError(f"invalid date {text!r}", tag) from None


def parse_datetime(text: str, tag: bytes | None = None) -> _dt.datetime:
    m = re.match(r"^([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)$", text)
    if not m or m.group(2).upper() not in _MONTHS:
        raise ParseError(f"invalid date-time {text!r}", tag)
    try:
        off = _dt.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
        tz = _dt.timezone(off if m.group(7) == "+" else -off)
        return _dt.datetime(int(m.group(3)), _MONTHS.index(m.group(2).upper()) + 1,
                            int(m.group(1).strip()), int(m.group(4)), int(m.group(5)),
                            int(m.group(6)), tzinfo=tz)
    except ValueError:
        raise ParseError(f"invalid date-time {text!r}", tag) from None


def format_datetime(value: _dt.datetime) -> str:
    """INTERNALDATE as `"dd-Mon-yyyy hh:mm:ss +zzzz"` content (without the quotes)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    off = value.utcoffset() or _dt.timedelta()
    mins = int(off.total_seconds() // 60)
    sign = "+" if mins >= 0 else "-"
    mins = abs(mins)
    return (f"{value.day:02d}-{_MONTHS[value.month - 1].title()}-{value.year:04d} "
            f"{value.hour:02d}:{value.minute:02d}:{value.second:02d} {sign}{mins // 60:02d}{mins % 60:02d}")


# ---------------------------------------------------------------------------------------------
# Search keys

@dataclass(frozen=True)
class SearchKey:
    """op is one of: ALL AND OR NOT SEQ UID FLAG UNFLAG KEYWORD UNKEYWORD NEW OLD RECENT
    HEADER BODY TEXT BEFORE ON SINCE SENTBEFORE SENTON SENTSINCE LARGER SMALLER MODSEQ OLDER
    YOUNGER SAVEDBEFORE SAVEDON SAVEDSINCE SAVEDATESUPPORTED."""
    op: str
    args: tuple[Any, ...] = ()


_FLAG_KEYS = {"ANSWERED": ("FLAG", "\\Answered"), "DELETED": ("FLAG", "\\Deleted"),
              "DRAFT": ("FLAG", "\\Draft"), "FLAGGED": ("FLAG", "\\Flagged"),
              "SEEN": ("FLAG", "\\Seen"), "UNANSWERED": ("UNFLAG", "\\Answered"),
              "UNDELETED": ("UNFLAG", "\\Deleted"), "UNDRAFT": ("UNFLAG", "\\Draft"),
              "UNFLAGGED": ("UNFLAG", "\\Flagged"), "UNSEEN": ("UNFLAG", "\\Seen")}
_HEADER_KEYS = {"BCC": "Bcc", "CC": "Cc", "FROM": "From", "SUBJECT": "Subject", "TO": "To"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
_DATE_KEYS |= {"SAVEDBEFORE", "SAVEDON", "SAVEDSINCE"}  # RFC 8514
_SEQ_CHARS = re.compile(r"^[\d*:,]+$")


class _SearchParser:
    def __init__(self, tokens: list[Token], charset: str, tag: bytes | None) -> None:
        self.tokens = tokens
        self.pos = 0
        self.charset = charset
        self.tag = tag

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.tag)

    def next(self) -> Token:
        if self.pos >= len(self.tokens):
            raise self.error("missing search argument")
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def string(self) -> str:
        t = self.next()
        if isinstance(t, Atom):
            raw = t.text.encode("ascii")
        elif isinstance(t, String):
            raw = t.data
        else:
            raise self.error("expected a string")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            if self.charset == "UTF-8":
                raise self.error("search string is not valid UTF-8") from None
            return raw.decode("latin-1")  # 8-bit text claimed to be US-ASCII

    def atom(self) -> str:
        t = self.next()
        if isinstance(t, Atom):
            return t.text
        if isinstance(t, String) and not t.literal:
            return t.data.decode("ascii", "replace")
        raise self.error("expected an atom")

    def number(self) -> int:
        text = self.atom()
        if not text.isdigit() or int(text) > 0xFFFFFFFF_FFFFFFFF:
            raise self.error(f"expected a number, got {text!r}")
        return int(text)

    def all(self) -> SearchKey:
        keys = []
        while self.pos < len(self.tokens):
            keys.append(self.key())
        if not keys:
            raise self.error("empty search")
        return keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))

    def key(self) -> SearchKey:
        t = self.next()
        if isinstance(t, list):
            sub = _SearchParser(t, self.charset, self.tag)
            return sub.all()
        if not isinstance(t, Atom):
            raise self.error("expected a search key")
        word = t.text.upper()
        if word == "ALL":
            return SearchKey("ALL")
        if word in _FLAG_KEYS:
            op, flag = _FLAG_KEYS[word]
            return SearchKey(op, (flag,))
        if word in ("NEW", "OLD", "RECENT", "SAVEDATESUPPORTED"):
            return SearchKey(word)
        if word == "UNRECENT":  # not in RFC 3501 but harmless
            return SearchKey("NOT", (SearchKey("RECENT"),))
        if word in ("KEYWORD", "UNKEYWORD"):
            kw = self.atom()
            return SearchKey(word, (kw,))
        if word in _HEADER_KEYS:
            return SearchKey("HEADER", (_HEADER_KEYS[word], self.string()))
        if word == "HEADER":
            name = self.string()
            return SearchKey("HEADER", (name, self.string()))
        if word in ("BODY", "TEXT"):
            return SearchKey(word, (self.string(),))
        if word in _DATE_KEYS:
            return SearchKey(word, (parse_date(self.atom(), self.tag),))
        if word in ("LARGER", "SMALLER"):
            return SearchKey(word, (self.number(),))
        if word == "MODSEQ":
            return SearchKey("MODSEQ", (self.number(),))
        if word in ("YOUNGER", "OLDER"):  # WITHIN (RFC 5032): an interval in seconds
            interval = self.number()
            if interval == 0:
                raise self.error(f"{word} needs an interval of at least one second")
            return SearchKey(word, (interval,))
        if word == "NOT":
            return SearchKey("NOT", (self.key(),))
        if word == "OR":
            a = self.key()
            return SearchKey("OR", (a, self.key()))
        if word == "UID":
            return SearchKey("UID", (parse_sequence_set(self.atom(), self.tag),))
        if _SEQ_CHARS.match(word):
            return SearchKey("SEQ", (parse_sequence_set(word, self.tag),))
        if word == "$":  # SEARCHRES (RFC 5182)
            return SearchKey("SEQ", (SavedResult(),))
        raise self.error(f"unknown search key {t.text!r}")


def parse_search(tokens: list[Token], tag: bytes | None = None) -> tuple[str, SearchKey]:
    """SEARCH arguments -> (charset, key). Charset is upper case; US-ASCII and UTF-8 known."""
    charset = "US-ASCII"
    if tokens and isinstance(tokens[0], Atom) and tokens[0].text.upper() == "CHARSET":
        if len(tokens) < 3:
            raise ParseError("CHARSET needs a name and search keys", tag)
        cs = tokens[1]
        if isinstance(cs, Atom):
            charset = cs.text.upper()
        elif isinstance(cs, String):
            charset = cs.data.decode("ascii", "replace").upper()
        else:
            raise ParseError("invalid charset", tag)
        if charset in ("UTF8",):
            charset = "UTF-8"
        if charset not in ("US-ASCII", "UTF-8"):
            raise BadCharset(charset, tag)
        tokens = tokens[2:]
    return charset, _SearchParser(tokens, charset, tag).all()


class InvalidMailboxName(ParseError):
    """A well-formed astring that is no valid mailbox name (broken modified UTF-7): no such
    mailbox can exist, so the session answers NO as Dovecot does, not BAD."""


class BadCharset(ParseError):
    """SEARCH CHARSET we do not support: answer `NO [BADCHARSET (UTF-8 US-ASCII)]`."""

    def __init__(self, charset: str, tag: bytes | None) -> None:
        super().__init__(f"unsupported charset {charset}", tag)
        self.charset = charset


# ---------------------------------------------------------------------------------------------
# Commands

@dataclass(frozen=True)
class Command:
    tag: bytes
    name: str                      # upper case: "FETCH", "LOGIN", ...
    uid: bool = False              # a UID FETCH/STORE/SEARCH/COPY/MOVE/EXPUNGE
    args: dict[str, Any] = field(default_factory=dict)


# printable ASCII but (){%*"\+ (and, as `$` allowed it, one final LF)
_TAG_RE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+\n?')
_NOARG = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "EXPUNGE", "UNSELECT",
          "IDLE", "NAMESPACE"}
_ONE_MAILBOX = {"CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE"}
_UID_COMMANDS = {"FETCH", "STORE", "SEARCH", "COPY", "MOVE", "EXPUNGE"}
_UID_COMMANDS |= {"SORT", "THREAD"}  # RFC 5256
SYSTEM_FLAGS = {"\\ANSWERED": "\\Answered", "\\FLAGGED": "\\Flagged", "\\DELETED": "\\Deleted",
                "\\SEEN": "\\Seen", "\\DRAFT": "\\Draft"}


def split_tag(data: bytes) -> tuple[bytes | None, bytes]:
    """The tag and the rest; tag None when the line has none we can echo."""
    sp = data.find(b" ")
    head = data if sp < 0 else data[:sp]
    if _TAG_RE.fullmatch(head):
        return head, data[sp + 1:] if sp >= 0 else b""
    return None, data


def mailbox_name(tok: Token, tag: bytes | None) -> str:
    """A mailbox astring, decoded from modified UTF-7; INBOX in any case becomes INBOX."""
    if isinstance(tok, Atom):
        raw = tok.text.encode("ascii")
    elif isinstance(tok, String):
        raw = tok.data
    else:
        raise ParseError("expected a mailbox name", tag)
    try:
        name = rev2.decode_name(raw) if _UTF8_NAMES.get() else mutf7.decode(raw)
    except rev2.InvalidUTF8Name as exc:
        raise InvalidMailboxName(str(exc), tag) from None
    except mutf7.MUTF7Error:
        # RFC 6855-style clients send UTF-8 directly; accept it when it decodes.
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidMailboxName("mailbox name is neither modified UTF-7 nor UTF-8", tag) from None
        if "&" in name or any(ord(c) < 0x20 for c in name):
            raise InvalidMailboxName("invalid mailbox name", tag)
    if name.upper() == "INBOX":
        return "INBOX"
    if name.upper().startswith("INBOX."):
        name = "INBOX" + name[5:]
    return name


def astring_bytes(tok: Token, tag: bytes | None) -> bytes:
    if isinstance(tok, Atom):
        return tok.text.encode("ascii")
    if isinstance(tok, String):
        return tok.data
    raise ParseError("expected a string", tag)


def _pattern(tok: Token, tag: bytes | None) -> str:
    """A LIST pattern: like a mailbox name but keeping % and *."""
    raw = astring_bytes(tok, tag)
    try:
        return rev2.decode_name(raw) if _UTF8_NAMES.get() else mutf7.decode(raw)
    except rev2.InvalidUTF8Name:
        raise ParseError("invalid mailbox pattern", tag) from None
    except mutf7.MUTF7Error:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("invalid mailbox pattern", tag) from None


def _flags(tok: Token, tag: bytes | None, allow_recent: bool = False) -> tuple[str, ...]:
    items = tok if isinstance(tok, list) else [tok]
    out: list[str] = []
    for t in items:
        if not isinstance(t, Atom):
            raise ParseError("flags are atoms", tag)
        text = t.text
        if text.startswith("\\"):
            canon = SYSTEM_FLAGS.get(text.upper())
            if canon is None:
                if text.upper() == "\\RECENT" and allow_recent:
                    canon = "\\Recent"
                else:
                    raise ParseError(f"invalid system flag {text}", tag)
            text = canon
        elif any(c in text for c in "[]%*"):
            raise ParseError(f"invalid keyword {text}", tag)
        if text not in out:
            out.append(text)
    return tuple(out)


def _atom(tok: Token, tag: bytes | None, what: str) -> str:
    if not isinstance(tok, Atom):
        raise ParseError(f"expected {what}", tag)
    return tok.text


# set while parse_command parses an IMAP4rev2 session's command: mailbox names are UTF-8 (rev2.py)
_UTF8_NAMES: ContextVar[bool] = ContextVar("imap_utf8_names", default=False)


def parse_command(data: bytes, limits: Limits = Limits(), utf8_names: bool = False) -> Command:
    """Parse one whole command (without the final CRLF, literals inlined); `utf8_names` for a
    session that enabled IMAP4rev2 (mailbox names in UTF-8, no modified UTF-7)."""
    token = _UTF8_NAMES.set(utf8_names)
    try:
        return _parse_command(data, limits)
    finally:
        _UTF8_NAMES.reset(token)


def _parse_command(data: bytes, limits: Limits) -> Command:
    if len(data) > limits.max_command:
        raise ParseError("command too long")
    tag, rest = split_tag(data)
    if tag is None:
        raise ParseError("missing or invalid tag")
    if not rest:
        raise ParseError("missing command name", tag)
    sp = rest.find(b" ")
    name_b = rest if sp < 0 else rest[:sp]
    tail = b"" if sp < 0 else rest[sp + 1:]
    if sp >= 0 and not tail:
        raise ParseError("trailing space", tag)
    try:
        name = name_b.decode("ascii").upper()
    except UnicodeDecodeError:
        raise ParseError("invalid command name", tag) from None
    uid = False
    if name == "UID":
        sp = tail.find(b" ")
        sub = (tail if sp < 0 else tail[:sp]).decode("ascii", "replace").upper()
        if sub not in _UID_COMMANDS:
            raise ParseError("UID needs FETCH, STORE, SEARCH, COPY, MOVE or EXPUNGE", tag)
        uid, name = True, sub
        tail = b"" if sp < 0 else tail[sp + 1:]
    tokens = _Tokenizer(tail, tag).tokens()
    return Command(tag, name, uid, _ARGS.get(name, _unknown)(tokens, tag, uid))


def _count(tokens: list[Token], tag: bytes | None, lo: int, hi: int | None = None) -> None:
    hi = lo if hi is None else hi
    if not lo <= len(tokens) <= hi:
        raise ParseError("wrong number of arguments", tag)


def _unknown(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    raise ParseError("unknown command", tag)


def _a_noarg(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 0)
    return {}


def _a_login(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2)
    return {"user": astring_bytes(tokens[0], tag), "password": astring_bytes(tokens[1], tag)}


def _a_authenticate(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1, 2)
    mech = _atom(tokens[0], tag, "a mechanism").upper()
    initial = None
    if len(tokens) == 2:
        initial = _atom(tokens[1], tag, "an initial response").encode("ascii")
    return {"mechanism": mech, "initial": initial}


def _a_select(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1, 2)
    condstore = False
    if len(tokens) == 2:
        params = tokens[1]
        if not isinstance(params, list):
            raise ParseError("select parameters are a list", tag)
        qresync = None
        rest = list(params)
        while rest:
            p = rest.pop(0)
            if isinstance(p, Atom) and p.text.upper() == "CONDSTORE":
                condstore = True
            elif isinstance(p, Atom) and p.text.upper() == "QRESYNC" and rest and isinstance(rest[0], list):
                qresync = _qresync_params(rest.pop(0), tag)
            else:
                raise ParseError("unknown select parameter", tag)
        if qresync is not None:
            return {"mailbox": mailbox_name(tokens[0], tag), "condstore": condstore, "qresync": qresync}
    return {"mailbox": mailbox_name(tokens[0], tag), "condstore": condstore}


def _qresync_params(toks: list[Token], tag: bytes | None) -> tuple[Any, ...]:
    """RFC 7162: (uidvalidity mod-sequence [known-uids [(seq-set uid-set)]])."""
    if not 2 <= len(toks) <= 4:
        raise ParseError("QRESYNC takes UIDVALIDITY, MODSEQ and optionally known UIDs", tag)
    uidvalidity, modseq = _numeric(toks[0], tag), _numeric(toks[1], tag)
    if not 0 < uidvalidity <= 0xFFFFFFFF or modseq <= 0:
        raise ParseError("invalid QRESYNC UIDVALIDITY or MODSEQ", tag)
    known = None
    match = None
    rest = toks[2:]
    if rest and isinstance(rest[0], Atom):
        known = parse_sequence_set(rest.pop(0).text, tag)
    if rest:
        pair = rest.pop(0)
        if not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(t, Atom) for t in pair):
            raise ParseError("QRESYNC sequence match data is (seq-set uid-set)", tag)
        match = tuple(parse_sequence_set(t.text, tag) for t in pair)  # type: ignore[union-attr]
    return uidvalidity, modseq, known, match


def _a_mailbox(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1)
    return {"mailbox": mailbox_name(tokens[0], tag)}


def _a_rename(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2)
    return {"old": mailbox_name(tokens[0], tag), "new": mailbox_name(tokens[1], tag)}


def _a_list(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    # LIST [(selection options)] reference pattern [RETURN (options)]  (RFC 5258, RFC 5819)
    extended = bool(tokens) and isinstance(tokens[0], list)
    selection: tuple[str, ...] = ()
    if tokens and isinstance(tokens[0], list):
        selection = tuple(_atom(t, tag, "a selection option").upper() for t in tokens[0])
        tokens = tokens[1:]
    returns: tuple[str, ...] = ()
    status_items: tuple[str, ...] = ()
    if len(tokens) == 4 and isinstance(tokens[2], Atom) and tokens[2].text.upper() == "RETURN":
        if not isinstance(tokens[3], list):
            raise ParseError("RETURN options are a list", tag)
        returns, status_items = _list_returns(tokens[3], tag)
        tokens = tokens[:2]
        extended = True
    _count(tokens, tag, 2)
    patterns: list[str]
    if isinstance(tokens[1], list):
        if not tokens[1]:
            raise ParseError("empty list of mailbox patterns", tag)
        patterns = [_pattern(t, tag) for t in tokens[1]]
        extended = True
    else:
        patterns = [_pattern(tokens[1], tag)]
    _list_selection_check(selection, tag)
    return {"reference": _pattern(tokens[0], tag), "patterns": tuple(patterns),
            "selection": selection, "returns": returns, "status_items": status_items,
            "extended": extended}


LIST_SELECTION_OPTIONS = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
LIST_RETURN_OPTIONS = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")


def _list_selection_check(selection: tuple[str, ...], tag: bytes | None) -> None:
    """RFC 5258 section 3.1: unknown options and RECURSIVEMATCH without a base option are BAD."""
    for opt in selection:
        if opt not in LIST_SELECTION_OPTIONS:
            raise ParseError(f"unknown LIST selection option {opt}", tag)
    if "RECURSIVEMATCH" in selection and not {"SUBSCRIBED", "SPECIAL-USE"} & set(selection):
        raise ParseError("RECURSIVEMATCH needs another selection option than REMOTE", tag)


def _list_returns(toks: list[Token], tag: bytes | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """RETURN (CHILDREN SUBSCRIBED SPECIAL-USE STATUS (items)) -> (options, status items)."""
    returns: list[str] = []
    status: tuple[str, ...] = ()
    i = 0
    while i < len(toks):
        opt = _atom(toks[i], tag, "a return option").upper()
        if opt not in LIST_RETURN_OPTIONS:
            raise ParseError(f"unknown LIST return option {opt}", tag)
        if opt == "STATUS":  # RFC 5819: STATUS (status-att ...)
            if i + 1 >= len(toks) or not isinstance(toks[i + 1], list) or not toks[i + 1]:
                raise ParseError("RETURN STATUS needs a list of status items", tag)
            status = _status_items(toks[i + 1], tag)
            i += 1
        if opt not in returns:
            returns.append(opt)
        i += 1
    return tuple(returns), status


def _a_lsub(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    args = _a_list(tokens, tag, uid)
    if args["extended"]:
        raise ParseError("LSUB takes no selection options, pattern lists or RETURN", tag)
    return args


_STATUS_ITEMS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE"}  # SIZE: RFC 8438
_STATUS_ITEMS |= {"DELETED", "DELETED-STORAGE"}  # RFC 9208 (QUOTA=RES-STORAGE), RFC 9051


def _a_status(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2)
    if not isinstance(tokens[1], list) or not tokens[1]:
        raise ParseError("STATUS items are a list", tag)
    return {"mailbox": mailbox_name(tokens[0], tag), "items": _status_items(tokens[1], tag)}


def _status_items(toks: list[Token], tag: bytes | None) -> tuple[str, ...]:
    items = []
    for t in toks:
        item = _atom(t, tag, "a status item").upper()
        if item not in _STATUS_ITEMS:
            raise ParseError(f"unknown status item {item}", tag)
        items.append(item)
    return tuple(items)


def _a_append(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    # APPEND mailbox 1*(SP [flag-list SP] [date-time SP] literal)  (RFC 3502 MULTIAPPEND)
    if len(tokens) < 2:
        raise ParseError("wrong number of arguments", tag)
    mailbox = mailbox_name(tokens[0], tag)
    messages = []
    rest = tokens[1:]
    while rest:
        flags: tuple[str, ...] = ()
        date = None
        if isinstance(rest[0], list):
            flags = _flags(rest[0], tag)
            rest = rest[1:]
        if rest and isinstance(rest[0], String) and not rest[0].literal:
            date = parse_datetime(rest[0].data.decode("ascii", "replace"), tag)
            rest = rest[1:]
        if not rest or not isinstance(rest[0], String) or not rest[0].literal:
            raise ParseError("APPEND message must be a literal (a date-time a quoted string)", tag)
        messages.append((flags, date, rest[0].data))
        rest = rest[1:]
    flags, date, message = messages[0]
    return {"mailbox": mailbox, "flags": flags, "date": date, "message": message,
            "messages": tuple(messages)}


def _a_search(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    returns: tuple[str, ...] | None = None
    if len(tokens) >= 2 and isinstance(tokens[0], Atom) and tokens[0].text.upper() == "RETURN":
        if not isinstance(tokens[1], list):
            raise ParseError("RETURN options are a list", tag)
        returns = tuple(_atom(t, tag, "a return option").upper() for t in tokens[1])
        tokens = tokens[2:]
    charset, key = parse_search(tokens, tag)
    return {"charset": charset, "key": key, "returns": returns}


SORT_CRITERIA = {"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"}


def _return_options(tokens: list[Token], tag: bytes | None) -> tuple[tuple[str, ...] | None, list[Token]]:
    """A leading `RETURN (options)` (ESEARCH, ESORT): (the options or None, the rest)."""
    if len(tokens) >= 2 and isinstance(tokens[0], Atom) and tokens[0].text.upper() == "RETURN":
        if not isinstance(tokens[1], list):
            raise ParseError("RETURN options are a list", tag)
        return tuple(_atom(t, tag, "a return option").upper() for t in tokens[1]), tokens[2:]
    return None, tokens


def _charset_and_keys(tokens: list[Token], tag: bytes | None) -> tuple[str, SearchKey]:
    """SORT/THREAD: a charset (required) and search keys."""
    if len(tokens) < 2:
        raise ParseError("a charset and search keys are required", tag)
    return parse_search([Atom("CHARSET")] + tokens, tag)


def _a_sort(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    # SORT [RETURN (options)] (criteria) charset search-keys  (RFC 5256, RFC 5267)
    returns, tokens = _return_options(tokens, tag)
    if not tokens or not isinstance(tokens[0], list):
        raise ParseError("SORT criteria are a list", tag)
    criteria: list[tuple[str, bool]] = []
    reverse = False
    for t in tokens[0]:
        word = _atom(t, tag, "a sort criterion").upper()
        if word == "REVERSE" and not reverse:
            reverse = True
        elif word in SORT_CRITERIA:
            criteria.append((word, reverse))
            reverse = False
        else:
            raise ParseError(f"unknown sort criterion {word}", tag)
    if reverse or not criteria:
        raise ParseError("empty sort criteria" if not criteria else "sort criteria end with REVERSE", tag)
    charset, key = _charset_and_keys(tokens[1:], tag)
    return {"criteria": tuple(criteria), "charset": charset, "key": key, "returns": returns}


THREAD_ALGORITHMS = {"ORDEREDSUBJECT", "REFERENCES"}


def _a_thread(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    # THREAD algorithm charset search-keys  (RFC 5256)
    if not tokens:
        raise ParseError("THREAD needs an algorithm, a charset and search keys", tag)
    algorithm = _atom(tokens[0], tag, "a thread algorithm").upper()
    if algorithm not in THREAD_ALGORITHMS:
        raise ParseError(f"unknown thread algorithm {algorithm}", tag)
    charset, key = _charset_and_keys(tokens[1:], tag)
    return {"algorithm": algorithm, "charset": charset, "key": key}


def _a_fetch(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2, 3)
    seq = parse_sequence_set(_atom(tokens[0], tag, "a sequence set"), tag)
    atts = parse_fetch_atts(tokens[1], tag)
    changedsince = None
    vanished = False
    if len(tokens) == 3:
        mods = tokens[2]
        if (isinstance(mods, list) and len(mods) == 3 and isinstance(mods[2], Atom)
                and mods[2].text.upper() == "VANISHED"):  # RFC 7162 3.2.6: UID FETCH only
            if not uid:
                raise ParseError("VANISHED needs UID FETCH", tag)
            vanished = True
            mods = mods[:2]
        if (not isinstance(mods, list) or len(mods) != 2 or not isinstance(mods[0], Atom)
                or mods[0].text.upper() != "CHANGEDSINCE"):
            raise ParseError("unknown FETCH modifier", tag)
        changedsince = int(_numeric(mods[1], tag))
    if vanished:
        return {"set": seq, "atts": tuple(atts), "changedsince": changedsince, "vanished": True}
    return {"set": seq, "atts": tuple(atts), "changedsince": changedsince}


def _numeric(tok: Token, tag: bytes | None) -> int:
    if isinstance(tok, Atom) and tok.text.isdigit():
        return int(tok.text)
    raise ParseError("expected a number", tag)


_STORE_ITEM = re.compile(r"^([+-]?)FLAGS(\.SILENT)?$")


def _a_store(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    if len(tokens) < 3:
        raise ParseError("STORE needs a sequence set, an item and flags", tag)
    seq = parse_sequence_set(_atom(tokens[0], tag, "a sequence set"), tag)
    rest = tokens[1:]
    unchangedsince = None
    if isinstance(rest[0], list):
        mods = rest[0]
        if (len(mods) != 2 or not isinstance(mods[0], Atom)
                or mods[0].text.upper() != "UNCHANGEDSINCE"):
            raise ParseError("unknown STORE modifier", tag)
        unchangedsince = _numeric(mods[1], tag)
        rest = rest[1:]
    item = _atom(rest[0], tag, "a store item").upper()
    m = _STORE_ITEM.match(item)
    if not m:
        raise ParseError(f"invalid STORE item {item}", tag)
    flag_toks = rest[1:]
    if len(flag_toks) == 1 and isinstance(flag_toks[0], list):
        flags = _flags(flag_toks[0], tag)
    else:
        if not flag_toks:
            raise ParseError("STORE needs flags", tag)
        flags = _flags(flag_toks, tag)
    return {"set": seq, "mode": m.group(1) or "=", "silent": bool(m.group(2)), "flags": flags,
            "unchangedsince": unchangedsince}


def _a_copy(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2)
    return {"set": parse_sequence_set(_atom(tokens[0], tag, "a sequence set"), tag),
            "mailbox": mailbox_name(tokens[1], tag)}


def _a_expunge(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    if uid:
        _count(tokens, tag, 1)
        return {"set": parse_sequence_set(_atom(tokens[0], tag, "a sequence set"), tag)}
    _count(tokens, tag, 0)
    return {}


def _a_id(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1)
    t = tokens[0]
    if isinstance(t, Atom) and t.text.upper() == "NIL":
        return {"params": None}
    if not isinstance(t, list) or len(t) % 2 or len(t) > 60:
        raise ParseError("ID parameters are NIL or a list of field-value pairs", tag)
    params: dict[str, str | None] = {}
    for k, v in zip(t[::2], t[1::2]):
        if not isinstance(k, String):
            raise ParseError("ID field names are strings", tag)
        if isinstance(v, Atom) and v.text.upper() == "NIL":
            val = None
        elif isinstance(v, String):
            val = v.data.decode("utf-8", "replace")
        else:
            raise ParseError("ID values are strings or NIL", tag)
        params[k.data.decode("utf-8", "replace")[:30]] = val
    return {"params": params}


def _a_enable(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    if not tokens:
        raise ParseError("ENABLE needs capabilities", tag)
    return {"capabilities": tuple(_atom(t, tag, "a capability").upper() for t in tokens)}


def _a_getquota(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1)  # GETQUOTA quota-root (an astring, RFC 9208)
    return {"root": astring_bytes(tokens[0], tag).decode("utf-8", "replace")}


def _a_setquota(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 2)  # SETQUOTA quota-root (resource limit ...)
    if not isinstance(tokens[1], list) or len(tokens[1]) % 2:
        raise ParseError("SETQUOTA needs a list of resource-limit pairs", tag)
    return {"root": astring_bytes(tokens[0], tag).decode("utf-8", "replace")}


def _a_compress(tokens: list[Token], tag: bytes | None, uid: bool) -> dict[str, Any]:
    _count(tokens, tag, 1)  # COMPRESS mechanism (RFC 4978)
    return {"mechanism": _atom(tokens[0], tag, "a compression mechanism").upper()}


_ARGS = {name: _a_noarg for name in _NOARG}
_ARGS.update({name: _a_mailbox for name in _ONE_MAILBOX})
_ARGS.update({
    "EXPUNGE": _a_expunge, "LOGIN": _a_login, "AUTHENTICATE": _a_authenticate,
    "SELECT": _a_select, "EXAMINE": _a_select, "RENAME": _a_rename, "LIST": _a_list,
    "LSUB": _a_lsub, "STATUS": _a_status, "APPEND": _a_append, "SEARCH": _a_search,
    "FETCH": _a_fetch, "STORE": _a_store, "COPY": _a_copy, "MOVE": _a_copy, "ID": _a_id,
    "ENABLE": _a_enable,
})
_ARGS.update({"GETQUOTA": _a_getquota, "GETQUOTAROOT": _a_mailbox, "SETQUOTA": _a_setquota})
_ARGS["COMPRESS"] = _a_compress
_ARGS["SORT"] = _a_sort
_ARGS["THREAD"] = _a_thread
