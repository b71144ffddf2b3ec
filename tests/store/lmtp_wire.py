"""A raw LMTP client for tests: sends bytes, reads every reply line (multi-line replies joined)."""

from __future__ import annotations

import socket
from typing import Any


class Reply:
    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.code = int(lines[-1][:3])
        self.text = b"".join(lines).decode("ascii", "replace")

    def __repr__(self) -> str:
        return f"Reply({self.text!r})"


class LMTPWire:
    def __init__(self, addr: Any, timeout: float = 30.0) -> None:
        if isinstance(addr, tuple):
            self.sock = socket.create_connection(addr, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(addr)
        self.file = self.sock.makefile("rb")
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self.file.readline(100000)
            if not line:
                raise ConnectionError(f"connection closed after {lines!r}")
            if not line.endswith(b"\r\n"):
                raise AssertionError(f"reply line without CRLF: {line!r}")
            lines.append(line)
            if line[3:4] != b"-":
                return Reply(lines)

    def cmd(self, line: bytes | str) -> Reply:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF, nothing more to read)."""
        try:
            return self.file.read(1) == b""
        except (ConnectionError, OSError):
            return True

    def transaction(self, sender: str, rcpts: list[str], data: bytes) -> tuple[list[Reply], list[Reply]]:
        """MAIL, RCPTs, DATA: -> (RCPT replies, per-recipient replies after the data)."""
        assert self.cmd(f"MAIL FROM:<{sender}>").code == 250
        rr = [self.cmd(f"RCPT TO:<{r}>") for r in rcpts]
        accepted = sum(1 for r in rr if r.code == 250)
        d = self.cmd("DATA")
        if accepted == 0:
            assert d.code == 503
            return rr, []
        assert d.code == 354, d
        self.send(dot_stuff(data) + b".\r\n")
        return rr, [self.reply() for _ in range(accepted)]

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def dot_stuff(data: bytes) -> bytes:
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    lines = data.split(b"\r\n")
    return b"\r\n".join(b"." + ln if ln.startswith(b".") else ln for ln in lines)
