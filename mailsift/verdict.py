"""The Verdict — one immutable result of scanning a message — and the headers it becomes.

This is the only module that formats `X-Spam-*` and `X-Virus-*` headers. The formats are
SpamAssassin's, so Thunderbird, Sieve `spamtest` and procmail recipes work unchanged:

    X-Spam-Flag: YES                                  (spam only)
    X-Spam-Score: 7.3
    X-Spam-Level: *******                             (one * per whole point)
    X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99 autolearn=no version=mailsift-0.1
    X-Spam-Report: ...strongest tokens for and against...
    X-Virus-Scanned: mailsift 0.1 (clamd)
    X-Virus-Status: Clean | Infected (NAME) | Unscanned (REASON)   [+ " (partial scan)"]

A message over the milter's max_scan_size, or one clamd could not read to the end (its own
limits, reported with AlertExceedsMax), is `Unscanned (REASON) (partial scan)`: never `Clean`.

It is also the only module that reads them back: `read_headers(raw)` is what LMTP files by.
"""

from __future__ import annotations

import re

from mailsift import __version__
from mailsift.untrusted import (UNTRUSTED_SUFFIX, VERDICT_HEADER_PREFIXES,  # noqa: F401 - re-exported
                                is_verdict_header, untrusted_name)

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from typing import Any, Literal

    VirusState = Literal["clean", "infected", "unscanned"]


class _Record:
    """What @dataclass(frozen=True) gave the records below (equality and hash by field, repr,
    immutability, pickling) and a replace(), without importing dataclasses: importing it (and
    inspect, ast, dis with it) was a tenth of a one-message `mailsift classify`, which builds a
    Verdict. Subclasses list their fields in __slots__, in order, and set them in __init__
    through _set."""

    __slots__: tuple[str, ...] = ()

    def _set(self, **values: Any) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined, no-any-return]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r}: {type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r}: {type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        return self.__class__, self._values()

    def replace(self, **changes: Any) -> Any:
        """A copy with `changes` (what dataclasses.replace did)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        unknown = set(changes) - set(values)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no field {sorted(unknown)[0]!r}")
        values.update(changes)
        return self.__class__(**values)


# SpamAssassin's Bayes rule names and the probability bands they cover (lower bound).
_BAYES_BANDS: tuple[tuple[float, str], ...] = (
    (0.999, "BAYES_999"),
    (0.99, "BAYES_99"),
    (0.95, "BAYES_95"),
    (0.80, "BAYES_80"),
    (0.60, "BAYES_60"),
    (0.40, "BAYES_50"),
    (0.20, "BAYES_40"),
    (0.05, "BAYES_20"),
    (0.01, "BAYES_05"),
    (0.0, "BAYES_00"),
)


class VirusResult(_Record):
    __slots__ = ("state", "name", "reason", "scanner", "partial")
    state: VirusState
    name: str | None  # the signature, when infected
    reason: str | None  # why, when unscanned
    scanner: str
    partial: bool  # only the first max_scan_size bytes were scanned

    def __init__(self, state: VirusState, name: str | None = None, reason: str | None = None,
                 scanner: str = "clamd", partial: bool = False) -> None:
        self._set(state=state, name=name, reason=reason, scanner=scanner, partial=partial)


class Verdict(_Record):
    """The spam side of a scan (and, optionally, its virus side).

    probability: the model's spam probability, or None when no model could score.
    score: SpamAssassin-style points; `required` is the threshold.
    unsure: the model declines to decide (too little training, or a score in the unsure band).
    clues: strongest (token, weight) pairs; weight > 0 pushes towards spam.
    """

    __slots__ = ("probability", "score", "required", "unsure", "clues", "virus", "partial", "reason", "note")
    probability: float | None
    score: float
    required: float
    unsure: bool
    clues: tuple[tuple[str, float], ...]
    virus: VirusResult | None
    partial: bool  # only part of the message was scored
    reason: str | None  # why there is no probability
    note: str | None  # an operating note for the report (the first-day guard)

    def __init__(self, probability: float | None, score: float, required: float = 5.0, unsure: bool = False,
                 clues: tuple[tuple[str, float], ...] = (), virus: VirusResult | None = None,
                 partial: bool = False, reason: str | None = None, note: str | None = None) -> None:
        self._set(probability=probability, score=score, required=required, unsure=unsure, clues=clues,
                  virus=virus, partial=partial, reason=reason, note=note)

    @property
    def is_spam(self) -> bool:
        return self.probability is not None and not self.unsure and self.score >= self.required

    @property
    def label(self) -> Literal["spam", "ham", "unsure", "unknown"]:
        if self.probability is None:
            return "unknown"
        if self.unsure:
            return "unsure"
        return "spam" if self.score >= self.required else "ham"

    def with_virus(self, virus: VirusResult | None) -> Verdict:
        return Verdict(self.probability, self.score, self.required, self.unsure, self.clues,
                       virus, self.partial, self.reason, self.note)


class HeaderSet(_Record):
    """Headers to add, in order."""

    __slots__ = ("headers",)
    headers: tuple[tuple[str, str], ...]

    def __init__(self, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._set(headers=headers)

    def as_bytes(self) -> bytes:
        return b"".join(f"{k}: {v}\r\n".encode("utf-8") for k, v in self.headers)


def bayes_rule(probability: float) -> str:
    for lower, name in _BAYES_BANDS:
        if probability >= lower:
            return name
    return "BAYES_00"


def _fmt(score: float) -> str:
    return f"{score:.1f}"


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def _clean(text: str) -> str:
    """Make text safe for one header line: printable, no CR/LF."""
    if text.isascii() and text.isprintable():  # most tokens: nothing to replace
        return text
    text = _CONTROL_RE.sub("?", text)
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _report(clues: tuple[tuple[str, float], ...], limit: int = 5) -> str:
    spammy = [c for c in sorted(clues, key=lambda c: -c[1]) if c[1] > 0][:limit]
    hammy = [c for c in sorted(clues, key=lambda c: c[1]) if c[1] < 0][:limit]
    lines = []
    if spammy:
        lines.append("spam: " + ", ".join(f"{_clean(t)[:40]} {w:+.2f}" for t, w in spammy))
    if hammy:
        lines.append("ham: " + ", ".join(f"{_clean(t)[:40]} {w:+.2f}" for t, w in hammy))
    return "\r\n\t".join(lines)


def spam_headers(verdict: Verdict, version: str = __version__) -> list[tuple[str, str]]:
    """The X-Spam-* headers for a verdict."""
    tag = f"version=mailsift-{version}"
    if verdict.probability is None:
        reason = _clean(verdict.reason or "no model")
        return [("X-Spam-Status", f"Unknown, reason=\"{reason}\" {tag}")]
    score = verdict.score
    tests = [bayes_rule(verdict.probability)]
    if verdict.unsure:
        tests.append("MAILSIFT_UNSURE")
    if verdict.partial:
        tests.append("MAILSIFT_PARTIAL_SCAN")
    if verdict.note:
        tests.append("MAILSIFT_FIRST_DAY")
    yes = "Yes" if verdict.is_spam else "No"
    out: list[tuple[str, str]] = []
    if verdict.is_spam:
        out.append(("X-Spam-Flag", "YES"))
    out.append(("X-Spam-Score", _fmt(score)))
    # Stars follow the score as shown (9.96 shows as 10.0 and gets ten), so a procmail
    # recipe on X-Spam-Level and a Sieve test on X-Spam-Score agree.
    out.append(("X-Spam-Level", "*" * max(0, min(50, int(float(_fmt(score)))))))
    out.append((
        "X-Spam-Status",
        f"{yes}, score={_fmt(score)} required={_fmt(verdict.required)} "
        f"tests={','.join(tests)} autolearn=no {tag}",
    ))
    report = _report(verdict.clues)
    if verdict.note:
        report = _clean(verdict.note) + ("\r\n\t" + report if report else "")
    if report:
        out.append(("X-Spam-Report", report))
    return out


def virus_headers(virus: VirusResult, version: str = __version__) -> list[tuple[str, str]]:
    """The X-Virus-* headers for a scan result."""
    if virus.state == "infected":
        status = f"Infected ({_clean(virus.name or 'unknown')})"
    elif virus.state == "unscanned":
        status = f"Unscanned ({_clean(virus.reason or 'unknown')})"
    else:
        status = "Clean"
    if virus.partial:
        status += " (partial scan)"
    return [
        ("X-Virus-Scanned", f"mailsift {version} ({virus.scanner})"),
        ("X-Virus-Status", status),
    ]


def verdict_headers(verdict: Verdict, version: str = __version__) -> HeaderSet:
    """All headers the milter (and `mailsift classify -p`) add for a verdict."""
    headers = spam_headers(verdict, version)
    if verdict.virus is not None:
        headers += virus_headers(verdict.virus, version)
    return HeaderSet(tuple(headers))


# ---------------------------------------------------------------------------------------------
# Reading them back

_VIRUS_STATUS_RE = re.compile(r"^(clean|infected|unscanned)(?:\s*\((.*?)\))?(\s*\(partial scan\))?\s*$",
                              re.IGNORECASE | re.DOTALL)
_SCORE_RE = re.compile(r"\bscore=(-?\d+(?:\.\d+)?)")
_FOLD_RE = re.compile(rb"\r?\n[ \t]+")


class HeaderVerdict(_Record):
    """What a message's verdict headers say, as verdict_headers() wrote them.

    spam: X-Spam-Flag: YES. score: from X-Spam-Status (None for Unknown or none). unsure,
    partial_score: the MAILSIFT_UNSURE / MAILSIFT_PARTIAL_SCAN tests. virus: the X-Virus-Status
    state (None when there is none), with its signature `virus_name` or its `virus_reason`,
    and `virus_partial` for "(partial scan)"."""

    __slots__ = ("spam", "score", "unsure", "partial_score", "virus", "virus_name", "virus_reason", "virus_partial")
    spam: bool
    score: float | None
    unsure: bool
    partial_score: bool
    virus: VirusState | None
    virus_name: str | None
    virus_reason: str | None
    virus_partial: bool

    def __init__(self, spam: bool = False, score: float | None = None, unsure: bool = False,
                 partial_score: bool = False, virus: VirusState | None = None, virus_name: str | None = None,
                 virus_reason: str | None = None, virus_partial: bool = False) -> None:
        self._set(spam=spam, score=score, unsure=unsure, partial_score=partial_score, virus=virus,
                  virus_name=virus_name, virus_reason=virus_reason, virus_partial=virus_partial)

    @property
    def infected(self) -> bool:
        return self.virus == "infected"

    @property
    def fully_scanned(self) -> bool:
        """clamd read all of it and gave an answer (Clean or Infected, no "(partial scan)")."""
        return self.virus in ("clean", "infected") and not self.virus_partial

    def note(self) -> str | None:
        """A short note for a delivery reply or log when the message was not fully scanned."""
        if self.virus is None or self.fully_scanned:
            return None
        why = self.virus_reason or ("partial scan" if self.virus_partial else "unscanned")
        return f"not fully virus-scanned: {why}"


def header_block(raw: bytes) -> bytes:
    """The header block of a raw message (up to its first blank line), continuation lines
    unfolded, LF line ends."""
    end = len(raw)
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if 0 <= i < end:
            end = i
    return _FOLD_RE.sub(b" ", raw[:end]).replace(b"\r\n", b"\n")


def read_headers(raw: bytes) -> HeaderVerdict:
    """The verdict in a message's own X-Spam-Flag, X-Spam-Status and X-Virus-Status headers.
    An X-Spam-Flag: YES or an Infected status anywhere counts; for the rest the first wins.
    (The milter renamed any a sender wrote to *-Untrusted, which are not read.)"""
    spam = unsure = partial_score = False
    score: float | None = None
    status_seen = virus_seen = False
    virus: VirusState | None = None
    name = reason = None
    vpartial = False
    for line in header_block(raw).split(b"\n"):
        key, sep, value_b = line.partition(b":")
        if not sep:
            continue
        key = key.strip().lower()
        if key not in (b"x-spam-flag", b"x-spam-status", b"x-virus-status"):
            continue
        value = value_b.decode("utf-8", "replace").strip()
        if key == b"x-spam-flag":
            spam = spam or value.lower() == "yes"
        elif key == b"x-spam-status" and not status_seen:
            status_seen = True
            m = _SCORE_RE.search(value)
            score = float(m.group(1)) if m and not value.lower().startswith("unknown") else None
            tests = value.upper()
            unsure, partial_score = "MAILSIFT_UNSURE" in tests, "MAILSIFT_PARTIAL_SCAN" in tests
        elif key == b"x-virus-status":
            m = _VIRUS_STATUS_RE.match(value)
            if m is None:
                continue
            state = m.group(1).lower()
            if virus_seen and not (state == "infected" and virus != "infected"):
                continue
            virus_seen = True
            virus = state  # type: ignore[assignment]
            detail, vpartial = m.group(2), m.group(3) is not None
            if not vpartial and detail is not None and detail.strip().lower() == "partial scan":
                detail, vpartial = None, True  # "Clean (partial scan)"
            name = detail if state == "infected" else None
            reason = detail if state == "unscanned" else None
    return HeaderVerdict(spam, score, unsure, partial_score, virus, name, reason, vpartial)
