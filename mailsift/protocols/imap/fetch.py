"""Building one `* n FETCH (...)` response from a message's bytes and its store data (pure)."""

from __future__ import annotations

import datetime as _dt
import functools
from operator import attrgetter
from typing import Any, Callable, Container, Iterable, Mapping, NamedTuple

from mailsift.protocols.imap import binary, mimetree, response
from mailsift.protocols.imap.bodystructure import encoded_structure
from mailsift.protocols.imap.envelope import envelope
from mailsift.protocols.imap.parser import FetchAtt, Section
from mailsift.protocols.imap.preview import preview
from mailsift.protocols.imap.sections import _memo_key, fields_literal, partial, section_bytes, small_list

_NEEDS_DATA = {"ENVELOPE", "BODY", "BODYSTRUCTURE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY[]"}
_NEEDS_DATA |= {"PREVIEW", "BINARY[]", "BINARY.SIZE"}
_HEADER_ONLY_TEXTS = {"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"}
# What a message whose file is gone answers for the attributes that need its bytes (when no
# cache holds them): Dovecot's "NIL replies" (imap-fetch.c), RFC 2180 4.1.3.
_BODY_NIL = b'"text" "plain" NIL NIL NIL "7bit" 0 0'
_NIL_REPLIES = {
    "ENVELOPE": b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    "BODY": b"(" + _BODY_NIL + b")",
    "BODYSTRUCTURE": b"(" + _BODY_NIL + b" NIL NIL NIL NIL)",
}


def needs_data(atts: Iterable[FetchAtt]) -> bool:
    return any(a.name in _NEEDS_DATA for a in atts)


def header_only(atts: Iterable[FetchAtt]) -> bool:
    """True when every attribute is answered from the top-level header alone (a client listing a
    folder): the session may read just the header of a big message. ENVELOPE is: it reads
    nothing but top-level fields (the same bytes from the header alone as from the whole
    message: test_fetch_plan.py checks it on the corpora)."""
    for a in atts:
        if a.name in ("RFC822.HEADER", "ENVELOPE"):
            continue
        if a.name == "BODY[]":
            if a.section is None or a.section.part or a.section.text not in _HEADER_ONLY_TEXTS:
                return False
            continue
        if a.name in _NEEDS_DATA:
            return False
    return True


_TREE_ATTS = {"BODY", "BODYSTRUCTURE", "RFC822.TEXT"}


def needs_tree(atts: Iterable[FetchAtt]) -> bool:
    """True when an attribute needs the message's whole MIME tree (then parsed off the loop)."""
    for a in atts:
        if a.name in _TREE_ATTS:
            return True
        if a.name == "BODY[]" and a.section is not None and (
                a.section.part or a.section.text not in (None, *_HEADER_ONLY_TEXTS)):
            return True
    return False


def prepare(datas: Iterable["MessageData | None"], atts: Iterable[FetchAtt]) -> None:
    """In a worker thread: parse the messages' MIME trees and encode the BODY/BODYSTRUCTURE
    asked for, so that fetch_items on the event loop finds them done (a message may hold
    mimetree.MAX_PARTS parts)."""
    kinds = {a.name for a in atts} & {"BODY", "BODYSTRUCTURE"}
    for d in datas:
        if d is None or (d.raw is None and d._root is None):
            continue
        root = d.root
        for kind in kinds:
            encoded_structure(root, kind == "BODYSTRUCTURE")


class Info(NamedTuple):
    """A message's data from the view, for a MessageData made without one."""
    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int
    save_date: float | None


class MessageData:
    """What FETCH needs of one message; `raw` (CRLF) only when an attribute needs the bytes.

    `info` is the view's state of the message as it is (a store.listing.MessageInfo, a
    mailboxview.MessageState or an Info: uid, flags, internal_date, size, modseq, save_date), read
    through; the loader swaps it on a copy it keeps. perf: a slotted class made without copying
    fields, one per message of every FETCH (a dataclass of 11 fields cost a listing 20%)."""
    __slots__ = ("_root", "_top", "answers", "expunged", "header_only", "info", "raw")

    uid = property(attrgetter("info.uid"))
    flags = property(attrgetter("info.flags"))
    internal_date = property(attrgetter("info.internal_date"))
    size = property(attrgetter("info.size"))
    modseq = property(attrgetter("info.modseq"))
    save_date = property(attrgetter("info.save_date"))  # RFC 8514; None: unknown (SAVEDATE NIL)

    def __init__(self, uid: int, flags: frozenset[str], internal_date: float, size: int, modseq: int = 0,
                 raw: bytes | None = None, save_date: float | None = None, header_only: bool = False,
                 expunged: bool = False) -> None:
        self.info = Info(uid, flags, internal_date, size, modseq, save_date)
        self.raw = raw
        self.header_only = header_only  # only top-level header sections are asked for
        # Expunged from the store while this session still sees it (it has not been told yet):
        # served from the view and what the caches hold; `raw` and `_top` None mean no bytes left.
        self.expunged = expunged
        self._root: mimetree.Part | None = None
        self._top: mimetree.Part | None = None
        # the answers to its Plan's `questions`, in order, from the answer cache (loader.py)
        self.answers: tuple[bytes, ...] | None = None

    def __repr__(self) -> str:
        return f"MessageData({self.info!r}, expunged={self.expunged}, raw={self.raw is not None})"

    @property
    def root(self) -> mimetree.Part:
        if self._root is None:
            self._root = mimetree.parse(self.raw or b"")
        return self._root

    @property
    def top(self) -> mimetree.Part:
        """The top-level header alone (the full tree when it was parsed anyway)."""
        if self._root is not None:
            return self._root
        if self._top is None:
            self._top = mimetree.parse_top(self.raw or b"")
        return self._top


def datas_of(state: Mapping[int, Any], ghosts: Container[int], batch: Iterable[tuple[int, int]]) -> list[MessageData]:
    """The MessageData of (seq, uid) pairs from a view's state (MessageInfo or MessageState) and
    ghosts (expunged elsewhere, not yet reported)."""
    new, cls = object.__new__, MessageData
    out = []
    for _seq, uid in batch:
        d = new(cls)
        d.info = state[uid]
        d.expunged = uid in ghosts
        d.raw = d._root = d._top = d.answers = None
        d.header_only = False
        out.append(d)
    return out


def flag_atoms(flags: Iterable[str], recent: bool = False) -> bytes:
    """System flags (and \\Recent) first, then keywords, as Dovecot orders them."""
    if isinstance(flags, frozenset):  # (what the store and the view hold)
        return _flag_atoms_of(flags, recent)
    return _flag_atoms(flags, recent)


def _flag_atoms(flags: Iterable[str], recent: bool) -> bytes:
    system = sorted(f for f in flags if f.startswith("\\"))
    keywords = sorted(f for f in flags if not f.startswith("\\"))
    return response.flag_list(system + (["\\Recent"] if recent else []) + keywords)


# perf: a folder has few distinct flag sets; each listing FETCH formatted them per message
_flag_atoms_of = functools.lru_cache(maxsize=4096)(_flag_atoms)


_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def internaldate(epoch: float) -> bytes:
    """`"dd-Mon-yyyy hh:mm:ss +0000"` (parser.format_datetime of the UTC time, in one bytes
    formatting: perf, FETCH ALL and FAST name it for every message)."""
    when = _dt.datetime.fromtimestamp(epoch, _dt.timezone.utc)
    return b'"%02d-%b-%04d %02d:%02d:%02d +0000"' % (when.day, _MONTHS[when.month - 1], when.year, when.hour,
                                                     when.minute, when.second)


Getter = Callable[[MessageData, bool], "bytes | int"]
Liner = Callable[[int, MessageData, bool], bytes]


class Plan:
    """What one FETCH command answers for each message, worked out once per distinct attribute
    list (perf: response names, duplicates and the dispatch on each attribute were redone for
    every message of a listing, the questions below for every command).

    `line(seq, msg, recent)` is the whole `* seq FETCH (...)` line: one bytes formatting of the
    attributes' values (UID, RFC822.SIZE and MODSEQ as numbers, the rest as response bytes)."""
    __slots__ = ("headers_only", "line", "need_data", "questions", "tree")

    def __init__(self, atts: Iterable[FetchAtt], with_uid: bool = False, with_modseq: bool = False) -> None:
        atts = list(atts)
        if with_uid and not any(a.name == "UID" for a in atts):
            atts = [FetchAtt("UID")] + atts
        if with_modseq and not any(a.name == "MODSEQ" for a in atts):
            atts = atts + [FetchAtt("MODSEQ")]
        self.need_data = needs_data(atts)
        self.headers_only = self.need_data and header_only(atts)
        self.tree = self.need_data and needs_tree(atts)
        pieces: list[bytes] = []
        getters: list[Getter] = []
        names_done: set[str] = set()
        questions: list[Question] = []
        answerable = self.headers_only
        for a in atts:
            key = a.response_name()
            if key in names_done:
                continue
            names_done.add(key)
            spec = b"(%d)" if a.name == "MODSEQ" else b"%d" if a.name in ("UID", "RFC822.SIZE") else b"%b"
            pieces.append(key.encode("ascii", "replace").replace(b"%", b"%%") + b" " + spec)
            if _is_fields(a):
                assert a.section is not None
                key, keep = _memo_key(a.section.text or "", a.section.fields), a.section.text == "HEADER.FIELDS"
                getters.append(_fields_getter(a, key, keep, len(questions)))
                questions.append((key, functools.partial(_fields_answer, key=key, keep=keep)))
            elif a.name == "ENVELOPE":
                getters.append(_answer_getter(a, len(questions)))
                questions.append((_ENVELOPE_KEY, envelope_answer))
            else:
                getters.append(_getter(a))
                answerable = answerable and a.name not in _NEEDS_DATA
        # (key, answer from the header) of each HEADER.FIELDS[.NOT] list and ENVELOPE asked, when
        # nothing else needs the message: a message whose answers are all in the answer cache
        # then needs no header (loader.py)
        small = all(small_list(key[1]) for key, _answer in questions)
        self.questions = tuple(questions) if answerable and questions and small else ()
        self.line = _liner(b"* %d FETCH (" + b" ".join(pieces) + b")\r\n", getters)


def _liner(fmt: bytes, getters: list[Getter]) -> Liner:
    if len(getters) == 1:
        g0, = getters
        return lambda seq, m, r: fmt % (seq, g0(m, r))
    if len(getters) == 2:
        g0, g1 = getters
        return lambda seq, m, r: fmt % (seq, g0(m, r), g1(m, r))
    if len(getters) == 3:
        g0, g1, g2 = getters
        return lambda seq, m, r: fmt % (seq, g0(m, r), g1(m, r), g2(m, r))
    return lambda seq, m, r: fmt % (seq, *[g(m, r) for g in getters])


_PLANS: dict[tuple[tuple[FetchAtt, ...], bool, bool], Plan] = {}
_MAX_PLANS = 64             # distinct FETCH attribute lists kept per process (clients use a few)
_MAX_PLAN_SPEC = 1024       # longer section specs are not kept (a plan's size is bounded)


def plan(atts: Iterable[FetchAtt], with_uid: bool = False, with_modseq: bool = False) -> Plan:
    """The Plan of a FETCH command, from a small process-wide cache (clients repeat the same
    attribute lists: a listing, a body, FLAGS)."""
    key = (tuple(atts), with_uid, with_modseq)
    found = _PLANS.get(key)
    if found is None:
        found = Plan(key[0], with_uid, with_modseq)
        if sum(len(a.section.spec) for a in key[0] if a.section is not None) <= _MAX_PLAN_SPEC:
            if len(_PLANS) >= _MAX_PLANS:
                _PLANS.clear()
            _PLANS[key] = found
    return found


_LINE_HEAD = len(b"* 0 FETCH ")


def fetch_items(msg: MessageData, atts: Iterable[FetchAtt], recent: bool = False,
                with_uid: bool = False, with_modseq: bool = False) -> bytes:
    """The parenthesized FETCH data for one message (without `* n FETCH `)."""
    return plan(atts, with_uid, with_modseq).line(0, msg, recent)[_LINE_HEAD:-2]


# What the answer cache keeps, per attribute: (key, the answer from a message's top-level header)
Question = tuple[tuple[str, frozenset[str]], Callable[[mimetree.Part], bytes]]
_ENVELOPE_KEY: tuple[str, frozenset[str]] = ("ENVELOPE", frozenset())


def envelope_answer(top: mimetree.Part) -> bytes:
    """ENVELOPE as sent, from the top-level header (or the whole tree)."""
    return response.encode(envelope(top))


def _fields_answer(top: mimetree.Part, key: tuple[str, frozenset[str]], keep: bool) -> bytes:
    return fields_literal(top, key, keep)


def _answer_getter(a: FetchAtt, index: int) -> Getter:
    """The getter of an attribute the answer cache may hold, the `index`th question of its plan."""
    def answered(m: MessageData, r: bool) -> bytes:
        answers = m.answers
        if answers is not None:
            return answers[index]
        return _value(m, a, r)
    return answered


def _is_fields(a: FetchAtt) -> bool:
    """BODY[HEADER.FIELDS (...)] or its NOT form of the top-level header, whole."""
    return a.name == "BODY[]" and a.section is not None and not a.section.part and a.partial is None \
        and a.section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT")


def _fields_getter(a: FetchAtt, key: tuple[str, frozenset[str]], keep: bool, index: int) -> Getter:
    """The getter of a HEADER.FIELDS[.NOT] attribute, the `index`th question of its plan: from
    the answer cache's answers when the loader found them, else from the (cached) header."""
    def header_fields(m: MessageData, r: bool) -> bytes:
        answers = m.answers
        if answers is not None:
            return answers[index]
        top = m._root
        if top is None:
            top = m._top
            if top is None:
                if m.expunged and m.raw is None:
                    return _value(m, a, r)
                top = m.top
        memo = top._memo  # answered before for this header (sections.py)
        if memo is not None:
            hit = memo.get(key)
            if hit is not None:
                return hit
        return fields_literal(top, key, keep)
    return header_fields


def _getter(a: FetchAtt) -> Getter:
    n = a.name
    if n == "UID":
        return lambda m, _r: m.info.uid
    if n == "FLAGS":
        return lambda m, r: flag_atoms(m.info.flags, r)
    if n == "RFC822.SIZE":
        return lambda m, _r: m.info.size
    if n == "MODSEQ":
        return lambda m, _r: m.info.modseq
    section = a.section
    if n == "BODY[]" and section is not None and not section.part and section.text is None:
        window = a.partial

        def whole(m: MessageData, r: bool) -> bytes:  # the bytes as they are, no parse
            if m.expunged and m.raw is None:
                return _value(m, a, r)
            raw = m.raw or b""
            return b"{%d}\r\n%b" % (len(raw), raw) if window is None else response.literal(partial(raw, window))
        return whole
    return lambda m, r: _value(m, a, r)


def _gone_value(msg: MessageData, a: FetchAtt) -> bytes | None:
    """For an expunged message without its bytes: the value from its cached header when the
    attribute needs no more (None: answer it as usual from `msg.top`), else the NIL reply."""
    n = a.name
    if msg._top is not None:
        if n == "RFC822.HEADER":
            return None
        if n == "ENVELOPE":
            return response.encode(envelope(msg._top))
        if n == "BODY[]" and a.section is not None and not a.section.part \
                and a.section.text in _HEADER_ONLY_TEXTS:
            return None
    return _NIL_REPLIES.get(n, b"NIL")


def _value(msg: MessageData, a: FetchAtt, recent: bool) -> bytes:
    n = a.name
    if msg.expunged and msg.raw is None and n in _NEEDS_DATA:
        gone = _gone_value(msg, a)
        if gone is not None:
            return gone
    if n == "UID":
        return b"%d" % msg.uid
    if n == "FLAGS":
        return flag_atoms(msg.flags, recent)
    if n == "INTERNALDATE":
        return internaldate(msg.internal_date)
    if n == "SAVEDATE":
        return internaldate(msg.save_date) if msg.save_date is not None else b"NIL"
    if n == "RFC822.SIZE":
        return b"%d" % msg.size
    if n == "MODSEQ":
        return b"(%d)" % msg.modseq
    if n == "ENVELOPE":
        return envelope_answer(msg.top)
    if n == "BODYSTRUCTURE":
        return encoded_structure(msg.root, True)
    if n == "BODY":
        return encoded_structure(msg.root, False)
    if n == "RFC822":
        return response.literal(msg.raw or b"")
    if n == "RFC822.HEADER":
        return response.literal(msg.top.header)
    if n == "RFC822.TEXT":
        return response.literal(msg.root.body)
    if n == "BODY[]":
        section = a.section or Section()
        if not section.part and section.text is None:  # BODY[]: the bytes as they are, no parse
            return response.literal(partial(msg.raw or b"", a.partial))
        top_only = not section.part and section.text in _HEADER_ONLY_TEXTS
        data = section_bytes(msg.top if top_only else msg.root, section)
        return response.literal(partial(data, a.partial))
    if n in ("BINARY[]", "BINARY.SIZE"):  # RFC 3516; binary.UnknownCTE: NO [UNKNOWN-CTE]
        data, decoded = binary.section(msg.root, a.section.part if a.section else ())
        if n == "BINARY.SIZE":
            return b"%d" % len(data)
        data = partial(data, a.partial)
        return (b"~" if decoded or b"\0" in data else b"") + response.literal(data)
    if n == "PREVIEW":  # a literal also past 4 characters to escape, as Dovecot sends it
        text = preview(msg.root).encode("utf-8")
        escapes = text.count(b'"') + text.count(b"\\")
        return response.literal(text) if escapes > 4 else response.string(text)
    raise ValueError(f"unknown fetch attribute {n}")
