"""Labelled mail for evaluation: index files, deduplication and ordering by date.

An index lists one message per line, `LABEL PATH`, LABEL `spam` or `ham` and PATH absolute
or relative to the index file's folder, as in the TREC spam track's `full/index`. Blank
lines and lines starting with `#` are skipped; anything else is an error naming the line.

A stream for the online protocol is deduplicated (the same Message-ID, or the same body,
counts once: the first one seen is kept) and ordered by the Date header, oldest first.
"""

from __future__ import annotations

import calendar
import email.utils
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

LABELS = ("spam", "ham")

# Dates outside this window are typos or forgeries, not arrival times (UTC seconds).
_EARLIEST = calendar.timegm((1985, 1, 1, 0, 0, 0))
_LATEST = calendar.timegm((2100, 1, 1, 0, 0, 0))


class IndexFileError(ValueError):
    """An index file is unreadable, malformed or names a file that is not there."""


@dataclass(frozen=True)
class Entry:
    label: str  # spam | ham
    path: Path

    @property
    def id(self) -> str:
        """The message's id in a results file: its file name."""
        return self.path.name


@dataclass(frozen=True)
class MessageInfo:
    message_id: str | None  # normalised: no angle brackets, no blanks, lower case
    body_digest: str | None  # sha256 of the normalised body; None for (nearly) empty bodies
    date: float | None  # UTC seconds from the Date header, else the newest Received line
    date_source: str  # "date", "received" or "none"


@dataclass
class StreamStats:
    read: int = 0
    duplicates_message_id: int = 0
    duplicates_body: int = 0
    label_conflicts: list[tuple[Path, Path]] = field(default_factory=list)
    dated_by_received: int = 0
    undated: int = 0

    def lines(self) -> list[str]:
        return [
            f"read {self.read} messages",
            f"dropped {self.duplicates_message_id} duplicate Message-IDs and "
            f"{self.duplicates_body} duplicate bodies",
            f"{len(self.label_conflicts)} duplicates had the other label (the first one seen was kept)",
            f"{self.dated_by_received} dated by their Received line (no usable Date), {self.undated} undated (last)",
        ]


# --- index files ---------------------------------------------------------------------------

def parse_index(text: str, base: Path, source: str = "<index>") -> list[Entry]:
    """Parse index text; relative paths are resolved against `base`."""
    entries: list[Entry] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split(None, 1)
        if len(parts) != 2:
            raise IndexFileError(f"{source}:{lineno}: expected 'spam PATH' or 'ham PATH', got {stripped!r}")
        label, name = parts[0].lower(), parts[1]
        if label not in LABELS:
            raise IndexFileError(f"{source}:{lineno}: label must be spam or ham, got {parts[0]!r}")
        path = Path(name)
        if not path.is_absolute():
            path = base / path
        entries.append(Entry(label, path))
    return entries


def read_index(index: str | Path, check_files: bool = True) -> list[Entry]:
    """Read an index file. With `check_files`, every listed file must exist (checked up
    front, so a long run does not die half-way)."""
    index = Path(index)
    try:
        text = index.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise IndexFileError(f"cannot read index {index}: {exc.strerror}") from None
    entries = parse_index(text, index.parent, str(index))
    if not entries:
        raise IndexFileError(f"{index}: no messages listed")
    if check_files:
        missing = [e.path for e in entries if not e.path.is_file()]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise IndexFileError(f"{index}: listed message not found: {missing[0]}{more}")
    return entries


def format_index(entries: Iterable[Entry], base: Path | None) -> str:
    """Index text; paths relative to `base` (the index's folder), or absolute if None."""
    lines = []
    for e in entries:
        path = e.path.resolve() if base is None else Path(os.path.relpath(e.path.resolve(), base.resolve()))
        if any(c in str(path) for c in "\r\n"):
            raise IndexFileError(f"cannot list a path with a line break: {path!r}")
        lines.append(f"{e.label} {path}\n")
    return "".join(lines)


def write_index(entries: Iterable[Entry], index: str | Path, absolute: bool = False) -> None:
    """Write an index file atomically (temp file, rename)."""
    index = Path(index)
    index.parent.mkdir(parents=True, exist_ok=True)
    text = format_index(entries, None if absolute else index.parent)
    tmp = index.with_name(f".{index.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, index)


def folder_entries(folder: str | Path, label: str) -> list[Entry]:
    """Every regular file in `folder` (not recursive, hidden files and `cmds` skipped), by name."""
    if label not in LABELS:
        raise ValueError(f"label must be spam or ham, not {label!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise IndexFileError(f"not a folder: {folder}")
    return [
        Entry(label, p)
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.name != "cmds"
    ]


# --- what identifies and dates a message ----------------------------------------------------

def _split(raw: bytes) -> tuple[bytes, bytes]:
    """Header block and body: split at the first empty line (LF or CRLF)."""
    m = re.search(rb"\r?\n\r?\n", raw)
    if m is None:
        return raw, b""
    return raw[: m.start()], raw[m.end():]


def _headers(block: bytes) -> list[tuple[str, str]]:
    """Unfolded (lower-case name, value) pairs; lines that are not headers are skipped."""
    out: list[tuple[str, str]] = []
    for line in re.split(rb"\r?\n", block):
        if line[:1] in (b" ", b"\t") and out:
            name, value = out[-1]
            out[-1] = (name, value + " " + line.strip().decode("latin-1"))
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name or b" " in name.strip() or name.startswith(b"From "):
            continue
        out.append((name.strip().decode("latin-1").lower(), value.strip().decode("latin-1")))
    return out


def _parse_date(value: str) -> float | None:
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    try:
        ts = float(email.utils.mktime_tz(parsed))
    except (OverflowError, ValueError, TypeError):
        return None
    return ts if _EARLIEST <= ts < _LATEST else None


def normalise_message_id(value: str) -> str | None:
    m = re.search(r"<([^<>]+)>", value)
    mid = m.group(1) if m else value
    mid = re.sub(r"\s+", "", mid).lower()
    return mid or None


def body_digest(body: bytes) -> str | None:
    """sha256 of the body bytes exactly as they are; None for an empty (all-blank) body, which
    identifies nothing. Bodies differing only in whitespace stay distinct: they are separate
    deliveries of a campaign (29 such pairs in the shared corpora, nearly all spam), as real
    mail streams have them."""
    if not body.strip():
        return None
    return hashlib.sha256(body).hexdigest()


def message_info(raw: bytes) -> MessageInfo:
    """Message-ID, body digest and date of a raw message. Never raises on malformed mail."""
    block, body = _split(raw)
    headers = _headers(block)
    mid = next((normalise_message_id(v) for n, v in headers if n == "message-id"), None)
    date = next((d for n, v in headers if n == "date" and (d := _parse_date(v)) is not None), None)
    source = "date"
    if date is None:
        # The topmost Received line is the newest hop: when the mail arrived here.
        for name, value in headers:
            if name == "received" and ";" in value:
                date = _parse_date(value.rsplit(";", 1)[1])
                if date is not None:
                    source = "received"
                    break
    if date is None:
        source = "none"
    return MessageInfo(mid, body_digest(body), date, source)


# --- the stream ------------------------------------------------------------------------------

def build_stream(entries: Sequence[Entry], dedup: bool = True, order: bool = True,
                 stats: StreamStats | None = None) -> list[Entry]:
    """Deduplicate (first seen wins) and order by date (stable; undated messages last)."""
    stats = stats if stats is not None else StreamStats()
    seen_mid: dict[str, Entry] = {}
    seen_body: dict[str, Entry] = {}
    kept: list[tuple[float | None, int, Entry]] = []
    for i, entry in enumerate(entries):
        try:
            raw = entry.path.read_bytes()
        except OSError as exc:
            raise IndexFileError(f"cannot read {entry.path}: {exc.strerror}") from None
        stats.read += 1
        info = message_info(raw)
        if dedup:
            first = None
            if info.message_id is not None and info.message_id in seen_mid:
                first = seen_mid[info.message_id]
                stats.duplicates_message_id += 1
            elif info.body_digest is not None and info.body_digest in seen_body:
                first = seen_body[info.body_digest]
                stats.duplicates_body += 1
            if first is not None:
                if first.label != entry.label:
                    stats.label_conflicts.append((first.path, entry.path))
                continue
            if info.message_id is not None:
                seen_mid[info.message_id] = entry
            if info.body_digest is not None:
                seen_body[info.body_digest] = entry
        if info.date_source == "received":
            stats.dated_by_received += 1
        elif info.date_source == "none":
            stats.undated += 1
        kept.append((info.date, i, entry))
    if order:
        kept.sort(key=lambda k: (k[0] is None, k[0] or 0.0, k[1]))
    return [e for _, _, e in kept]
