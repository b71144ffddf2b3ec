"""Diagnostic milter for bench/milter_throughput.py: the cost floor of a pymilter milter.

It collects headers and body the way mailsift's milter does (header, eoh and body callbacks
@noreply) and at end-of-message adds N fixed headers, with no scanning and no scoring. The
gap between this peer and bare Postfix is what libmilter, pymilter and Postfix's milter
protocol cost; the gap between it and mailsift is what clamd and the spam model cost.

    python bench/peers/floor_milter.py unix:/path/milter.sock [N_HEADERS [CLAMD]]

With CLAMD (unix:PATH), end-of-message also has clamd scan the collected message (mailsift's
own clamd client): the floor of a milter that scans but does not score.
"""

from __future__ import annotations

import os
import sys

import Milter


class Floor(Milter.Base):
    adds = 7
    clamd = None  # a mailsift ClamdClient when asked to scan

    def __init__(self) -> None:
        self.chunks: list[bytes] = []

    @Milter.noreply
    def header(self, name: str, value: str) -> int:
        self.chunks.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
        return Milter.CONTINUE

    @Milter.noreply
    def eoh(self) -> int:
        self.chunks.append(b"\r\n")  # the blank line between header and body, as mailsift's
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self.chunks.append(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        raw = b"".join(self.chunks)
        self.chunks = []
        if self.clamd is not None:
            self.clamd.scan_bytes(raw)
        for i in range(self.adds):
            self.addheader(f"X-Floor-{i}", f"{len(raw)} bytes seen")
        return Milter.CONTINUE

    def abort(self) -> int:
        self.chunks = []
        return Milter.CONTINUE


def main() -> None:
    Floor.adds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    if len(sys.argv) > 3:
        from mailsift.scanner.clamav import ClamdClient
        Floor.clamd = ClamdClient(sys.argv[3])
    Milter.factory = Floor
    os.umask(0o000)  # Postfix's smtpd (user postfix) must be able to connect to the socket
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("floor", sys.argv[1], timeout=300)


if __name__ == "__main__":
    main()
