"""The default model: trained from the shared corpora when the model directory has none.

    python -m mailsift.classifier.default_model --dbpath models [--corpora DIR] [--force]

Messages are deduplicated (Message-ID, then body digest: about half of CSDMC2010 repeats the
SpamAssassin corpus) and learned in Date order, as they arrived. It takes well under a
minute. With a model already in the directory it does nothing (unless --force).
"""

from __future__ import annotations

import argparse
import email.utils
import fcntl
import os
import shutil
import hashlib
import re
import sys
import time
from pathlib import Path

from mailsift.logsetup import setup_logging

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CORPORA = REPO.parent / "shared" / "corpora"

# folder (relative to the corpora) -> label
FOLDERS: dict[str, str] = {
    "spamassassin/easy_ham": "ham",
    "spamassassin/easy_ham_2": "ham",
    "spamassassin/hard_ham": "ham",
    "spamassassin/spam": "spam",
    "spamassassin/spam_2": "spam",
    "csdmc2010/ham": "ham",
    "csdmc2010/spam": "spam",
}

_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")
_MID_RE = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(\S[^\r\n]*)")
_DATE_RE = re.compile(rb"(?im)^date[ \t]*:[ \t]*([^\r\n]*)")


def _date(head: bytes) -> float:
    m = _DATE_RE.search(head)
    if not m:
        return 0.0
    try:
        parsed = email.utils.parsedate_to_datetime(m.group(1).decode("latin-1").strip())
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def corpus_stream(corpora: Path) -> list[tuple[float, str, str]]:
    """(date, path, label) of every distinct message, in Date order."""
    seen_ids: set[bytes] = set()
    seen_bodies: set[bytes] = set()
    items: list[tuple[float, str, str]] = []
    for folder, label in FOLDERS.items():
        d = corpora / folder
        if not d.is_dir():
            continue
        for path in sorted(d.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            raw = path.read_bytes()
            m = _BLANK_LINE_RE.search(raw)
            head, body = (raw[: m.start()], raw[m.end():]) if m else (raw, b"")
            mid = _MID_RE.search(head)
            key = mid.group(1).strip() if mid else None
            digest = hashlib.sha256(body.replace(b"\r\n", b"\n").strip()).digest()
            if (key and key in seen_ids) or digest in seen_bodies:
                continue
            if key:
                seen_ids.add(key)
            seen_bodies.add(digest)
            items.append((_date(head), str(path), label))
    items.sort(key=lambda it: (it[0], it[1]))
    return items


def ensure_default_model(dbpath: str | Path, corpora: Path = DEFAULT_CORPORA, force: bool = False,
                         out: object = None, keep_versions: int = 5) -> bool:
    """Train the default model into `dbpath` unless one is there; True when it trained."""
    from mailsift.classifier.learn import LOCK_FILE, Learner, clear, has_model
    from mailsift.classifier.persist import MODEL_FILE, SIDECAR_FILE
    from mailsift.classifier.record import RECORD_FILE
    from mailsift.classifier.versions import record_version

    stream = out or sys.stdout
    if has_model(dbpath) and not force:
        print(f"model in {dbpath} exists: leaving it", file=stream)  # type: ignore[arg-type]
        return False
    if not corpora.is_dir():
        raise FileNotFoundError(f"corpora not found at {corpora}")
    start = time.monotonic()
    items = corpus_stream(corpora)
    # Train beside the target and move the files in, so readers of `dbpath` (a running
    # milter) never see it empty; load_model retries while the sidecar and model disagree.
    target = Path(dbpath)
    target.mkdir(parents=True, exist_ok=True)
    work = target / ".training"
    clear(work)
    with Learner(work, source=None) as learner:
        # In arrival order, each message with its own label, as mail comes in.
        learner.learn_labelled((path, Path(path).read_bytes(), label) for _, path, label in items)
        # This is the corpora's mail, not the site's: arm the first-day guard, let what the
        # site teaches outweigh it, and leave the raw-bytes member to the site (model.py).
        learner.model.mark_prior()
        learner.dirty = True
        learner.save()
        model = learner.model
    with open(target / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in (RECORD_FILE + "-wal", RECORD_FILE + "-shm"):
            (target / name).unlink(missing_ok=True)
        for name in (RECORD_FILE, MODEL_FILE, SIDECAR_FILE):
            os.replace(work / name, target / name)
        record_version(target, "default", keep_versions)
    shutil.rmtree(work, ignore_errors=True)
    print(f"trained the default model in {dbpath}: {model.n_ham_} ham, {model.n_spam_} spam "  # type: ignore[arg-type]
          f"from {corpora} in {time.monotonic() - start:.1f} s", file=stream)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mailsift.classifier.default_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dbpath", default="models", metavar="DIR")
    parser.add_argument("--corpora", default=str(DEFAULT_CORPORA), metavar="DIR")
    parser.add_argument("--force", action="store_true", help="retrain even when a model exists")
    args = parser.parse_args(argv)
    setup_logging("WARNING")
    try:
        ensure_default_model(args.dbpath, Path(args.corpora), args.force)
    except FileNotFoundError as exc:
        print(f"default_model: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
