"""IMAP command parsing, in process: the CPU parser.parse_command spends on the commands of
bench/imap_load.py's session mix.

    .venv/bin/python bench/imap_parse.py [--repeat 10000]

The ten commands of one session cycle (SELECT INBOX; FETCH 1:50 of three header fields; three
FETCH n (BODY.PEEK[]); STORE +FLAGS (\\Seen); APPEND of a real easy_ham message as a
LITERAL+ literal, inlined as the wire reader hands it over; NOOP; STORE +FLAGS.SILENT
(\\Deleted); EXPUNGE) are each parsed `--repeat` times; it prints the CPU microseconds
(time.process_time) per parse of each, and per cycle of all ten, the best of three passes.
No I/O and no threads: steadier than the load benchmark for an A/B of the parser (run it with
PYTHONPATH at each tree, back to back).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin" / "easy_ham"


def session_commands(message: bytes) -> list[bytes]:
    return [b"b1 SELECT INBOX", b"b2 FETCH 1:50 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])",
            b"b3 FETCH 17 (BODY.PEEK[])", b"b4 FETCH 123 (BODY.PEEK[])", b"b5 FETCH 9 (BODY.PEEK[])",
            b"b6 STORE 42 +FLAGS (\\Seen)", b"b7 APPEND INBOX {%d+}\r\n" % len(message) + message, b"b8 NOOP",
            b"b9 STORE 201 +FLAGS.SILENT (\\Deleted)", b"b10 EXPUNGE"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=10_000, help="parses of each command per pass")
    args = ap.parse_args()
    from mailsift.protocols.imap.parser import Limits, parse_command

    message = sorted(CORPUS.iterdir())[0].read_bytes()
    commands, limits, n = session_commands(message), Limits(), args.repeat
    print(f"parser: {sys.modules[parse_command.__module__].__file__}")
    cycle = 0.0
    for data in commands:
        best = float("inf")
        for _ in range(3):
            t0 = time.process_time()
            for _ in range(n):
                parse_command(data, limits)
            best = min(best, time.process_time() - t0)
        cycle += best
        print(f"{best / n * 1e6:8.2f} us  {data[:70]!r}")
    print(f"{cycle / n * 1e6:8.2f} us per session cycle (10 commands)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
