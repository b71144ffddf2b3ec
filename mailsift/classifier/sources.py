"""Messages from paths as sa-learn takes them: files, directories (one message per file),
Maildirs (cur/ and new/) and mbox files; - is stdin. numpy-free."""

from __future__ import annotations

import mailbox
import os
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def _read_file(path: Path) -> bytes | None:
    try:
        if path.stat().st_size > MAX_MESSAGE_BYTES:
            return None
        return path.read_bytes()
    except OSError:
        return None


def iter_dir(path: Path) -> Iterator[tuple[str, bytes | None]]:
    """Every regular file under `path` (recursively, hidden ones skipped), one message each."""
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if not name.startswith("."):
                p = Path(root) / name
                yield str(p), _read_file(p)


def iter_maildir(path: Path) -> Iterator[tuple[str, bytes | None]]:
    """Messages in a Maildir's cur/ and new/ (not tmp/)."""
    if not (path / "cur").is_dir() and not (path / "new").is_dir():
        yield str(path), None
        return
    for sub in ("cur", "new"):
        d = path / sub
        if d.is_dir():
            for name in sorted(os.listdir(d)):
                if not name.startswith("."):
                    yield str(d / name), _read_file(d / name)


def iter_mbox(path: Path) -> Iterator[tuple[str, bytes | None]]:
    try:
        box = mailbox.mbox(str(path), create=False)
        keys = box.keys()
    except (OSError, mailbox.Error):
        yield str(path), None
        return
    try:
        for n, key in enumerate(keys):
            try:
                yield f"{path}#{n + 1}", box.get_bytes(key)
            except (OSError, KeyError):
                yield f"{path}#{n + 1}", None
    finally:
        box.close()


def iter_paths(paths: list[str], kind: str | None) -> Iterator[tuple[str, bytes | None]]:
    """Messages from PATHs: '-' is stdin; kind is 'mbox', 'maildir', 'dir' or None (a file is
    one message, a directory holds one message per file)."""
    for p in paths:
        if p == "-":
            yield "-", sys.stdin.buffer.read()
            continue
        path = Path(p)
        if kind == "mbox":
            yield from iter_mbox(path)
        elif kind == "maildir":
            yield from iter_maildir(path)
        elif path.is_dir():
            yield from iter_dir(path)
        elif kind == "dir":
            yield str(path), None
        else:
            yield str(path), _read_file(path)


def count_paths(paths: list[str], kind: str | None) -> int | None:
    """How many messages PATHs hold, cheaply; None when unknown (mbox, stdin)."""
    total = 0
    for p in paths:
        path = Path(p)
        if p == "-" or kind == "mbox":
            return None
        if kind == "maildir":
            total += sum(len(os.listdir(path / s)) for s in ("cur", "new") if (path / s).is_dir())
        elif path.is_dir():
            total += sum(len([f for f in files if not f.startswith(".")]) for _, _, files in os.walk(path))
        else:
            total += 1
    return total
