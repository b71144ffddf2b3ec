"""The Verdict — one immutable result of scanning a message — and the headers it becomes.

This is the only module that formats `X-Spam-*` and `X-Virus-*` headers. The formats are
SpamAssassin's, so Thunderbird, Sieve `spamtest` and procmail recipes work unchanged:

    X-Spam-Flag: YES                                  (spam only)
    X-Spam-Score: 7.3
    X-Spam-Level: *******                             (one * per whole point)
    X-Spam-Status: Yes, score=7.3 required=5.0 tests=BAYES_99 autolearn=no version=mailsift-0.1
    X-Spam-Report: ...strongest tokens for and against...
    X-Virus-Scanned: mailsift 0.1 (clamd)
    X-Virus-Status: Clean | Infected (NAME) | Unscanned (REASON)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from mailsift import __version__

VirusState = Literal["clean", "infected", "unscanned"]

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

# Incoming headers with these prefixes are verdicts written by strangers.
VERDICT_HEADER_PREFIXES: tuple[str, ...] = ("x-spam-", "x-virus-")
UNTRUSTED_SUFFIX = "-Untrusted"


@dataclass(frozen=True)
class VirusResult:
    state: VirusState
    name: str | None = None  # the signature, when infected
    reason: str | None = None  # why, when unscanned
    scanner: str = "clamd"
    partial: bool = False  # only the first max_scan_size bytes were scanned


@dataclass(frozen=True)
class Verdict:
    """The spam side of a scan (and, optionally, its virus side).

    probability: the model's spam probability, or None when no model could score.
    score: SpamAssassin-style points; `required` is the threshold.
    unsure: the model declines to decide (too little training, or a score in the unsure band).
    clues: strongest (token, weight) pairs; weight > 0 pushes towards spam.
    """

    probability: float | None
    score: float
    required: float = 5.0
    unsure: bool = False
    clues: tuple[tuple[str, float], ...] = ()
    virus: VirusResult | None = None
    partial: bool = False  # only part of the message was scored
    reason: str | None = None  # why there is no probability
    note: str | None = None  # an operating note for the report (the first-day guard)

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


@dataclass(frozen=True)
class HeaderSet:
    """Headers to add, in order."""

    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

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
    if virus.partial and virus.state != "unscanned":
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


def is_verdict_header(name: str) -> bool:
    """True for incoming headers that carry someone else's verdict (X-Spam-*, X-Virus-*)."""
    low = name.strip().lower()
    return low.startswith(VERDICT_HEADER_PREFIXES) and not low.endswith(UNTRUSTED_SUFFIX.lower())


def untrusted_name(name: str) -> str:
    """The name an incoming verdict header is renamed to: X-Spam-Flag -> X-Spam-Flag-Untrusted."""
    return name.strip() + UNTRUSTED_SUFFIX
