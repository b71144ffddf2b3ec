#!/usr/bin/env python3
"""Write a TREC-style index of the shared corpora: deduplicated, ordered by Date.

    .venv/bin/python corpora/build_index.py [--corpora DIR] [--out bench/out/full.index]
                                            [--absolute] [--no-dedup] [--arrival-order]

The folders and labels are those of ../shared/corpora/README.md. Duplicates (the same
Message-ID, or byte-identical bodies) count once: the first seen in the folder order below
is kept. Messages are then ordered by their Date header (the newest Received line when the
Date is missing or absurd; undated last). On the shared corpora this gives 7,858 messages.

The index is written outside the repository (bench/out/ is git-ignored) with paths relative
to the index's folder, as the TREC `full/index` has them; `--absolute` writes absolute paths.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailsift.classifier.corpus import (  # noqa: E402
    Entry,
    IndexFileError,
    StreamStats,
    build_stream,
    folder_entries,
    write_index,
)

# Folder (relative to the corpora) and its label, in the order duplicates are resolved.
FOLDERS: tuple[tuple[str, str], ...] = (
    ("spamassassin/easy_ham", "ham"),
    ("spamassassin/easy_ham_2", "ham"),
    ("spamassassin/hard_ham", "ham"),
    ("spamassassin/spam", "spam"),
    ("spamassassin/spam_2", "spam"),
    ("csdmc2010/ham", "ham"),
    ("csdmc2010/spam", "spam"),
)
DEFAULT_CORPORA = ROOT.parent / "shared" / "corpora"
DEFAULT_OUT = ROOT / "bench" / "out" / "full.index"


def shared_entries(corpora: Path) -> list[Entry]:
    entries: list[Entry] = []
    for folder, label in FOLDERS:
        entries += folder_entries(corpora / folder, label)
    return entries


def shared_stream(corpora: Path = DEFAULT_CORPORA, dedup: bool = True, order: bool = True,
                  stats: StreamStats | None = None) -> list[Entry]:
    """The deduplicated, Date-ordered stream of the shared corpora (for the benchmarks)."""
    return build_stream(shared_entries(corpora), dedup=dedup, order=order, stats=stats)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA, help=f"default {DEFAULT_CORPORA}")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    ap.add_argument("--absolute", action="store_true", help="write absolute paths")
    ap.add_argument("--no-dedup", action="store_true", help="keep duplicates")
    ap.add_argument("--arrival-order", action="store_true",
                    help="keep the folder order instead of ordering by Date")
    args = ap.parse_args(argv)
    stats = StreamStats()
    try:
        stream = shared_stream(args.corpora, dedup=not args.no_dedup, order=not args.arrival_order, stats=stats)
        write_index(stream, args.out, absolute=args.absolute)
    except (IndexFileError, OSError) as exc:
        print(f"build_index: {exc}", file=sys.stderr)
        return 1
    for line in stats.lines():
        print(line)
    counts = Counter(e.label for e in stream)
    print(f"wrote {args.out}: {len(stream)} messages ({counts['spam']} spam, {counts['ham']} ham)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
