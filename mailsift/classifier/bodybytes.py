"""The bytes of a message's body that the default model's character prior reads.

The first-day character prior (chargrams.train_prior, SpamModel.mark_prior) learns the 4-grams
of the body only: the header block of public corpora carries their collecting sites'
Received lines and header layout, which the site's own mail does not share. The body starts
after the first empty line (what the regex \r?\n\r?\n matches first, as default_model.py
splits header and body); a message without one has no body. No numpy here: the numpy-free
scorer (scorer.py) reads the same bytes.
"""

from __future__ import annotations

HEADER_SCAN = 256 * 1024  # of the message searched for the end of its header block (tokenize.MAX_BYTES)


def body_head(raw: bytes, limit: int) -> bytes:
    """The first `limit` bytes of the body of `raw` (after its header block); b"" without one."""
    # the earliest of "\n\n" and "\n\r\n" (a "\r" before either changes nothing): two finds,
    # 2 us a corpus message, where the regex \r?\n\r?\n took 20
    lf = raw.find(b"\n\n", 0, HEADER_SCAN)
    crlf = raw.find(b"\n\r\n", 0, HEADER_SCAN)
    if lf < 0 and crlf < 0:
        return b""
    start = lf + 2 if crlf < 0 or 0 <= lf < crlf else crlf + 3
    return raw[start:start + limit]
