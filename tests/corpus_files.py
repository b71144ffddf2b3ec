"""Reading messages of ../shared/corpora for the tests that train models on them."""

from __future__ import annotations

from pathlib import Path


def corpus_files(corpora: Path, folder: str, n: int, skip: int = 0) -> list[bytes]:
    """The bytes of the `n` files of `folder` after the first `skip`, in name order."""
    paths = sorted(p for p in (corpora / folder).iterdir() if p.is_file())[skip:skip + n]
    return [p.read_bytes() for p in paths]
