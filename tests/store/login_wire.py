"""Logins on the wire for the gate and cache tests: IMAP LOGIN and POP3 AUTH PLAIN from a chosen
loopback source address (127.0.0.0/8 is all ours on Linux), timed; and the CPU time of a
`mailsift serve` with its worker processes, read from /proc."""

from __future__ import annotations

import base64
import os
import socket
import time
from pathlib import Path

from harness.procs import child_pids, wait_for

TIMEOUT = 60.0


def _connect(port: int, source: str, host: str = "127.0.0.1") -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(TIMEOUT)
    if source:
        sock.bind((source, 0))
    sock.connect((host, port))
    return sock


def _line(f: "socket.SocketIO | object") -> bytes:
    line = f.readline()  # type: ignore[attr-defined]
    if not line:
        raise ConnectionError("connection closed")
    return line  # type: ignore[no-any-return]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_login(port: int, user: str, password: str, source: str = "127.0.0.1", logout: bool = True,
               host: str = "127.0.0.1") -> tuple[bool, float]:
    """LOGIN on a new connection: (tagged OK?, seconds from sending LOGIN to its tagged reply)."""
    with _connect(port, source, host) as sock:
        f = sock.makefile("rb")
        assert _line(f).startswith(b"* OK")
        sock.sendall(f"a LOGIN {_quote(user)} {_quote(password)}\r\n".encode())
        t0 = time.monotonic()
        while True:
            line = _line(f)
            if line.startswith(b"a "):
                break
        took = time.monotonic() - t0
        ok = line.startswith(b"a OK")
        if logout:
            try:
                sock.sendall(b"z LOGOUT\r\n")
                while not _line(f).startswith(b"z "):
                    pass
            except (ConnectionError, OSError):
                pass
        return ok, took


def pop3_login(port: int, user: str, password: str, source: str = "127.0.0.1") -> tuple[bool, float]:
    """AUTH PLAIN on a new connection (the name exactly as given): (+OK?, seconds)."""
    with _connect(port, source) as sock:
        f = sock.makefile("rb")
        assert _line(f).startswith(b"+OK")
        blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        sock.sendall(f"AUTH PLAIN {blob}\r\n".encode())
        t0 = time.monotonic()
        line = _line(f)
        took = time.monotonic() - t0
        ok = line.startswith(b"+OK")
        try:
            sock.sendall(b"QUIT\r\n")
            _line(f)
        except (ConnectionError, OSError):
            pass
        return ok, took


def imap_ready(port: int, host: str = "127.0.0.1") -> None:
    """Wait until an IMAP worker greets (the main process accepts before its workers serve)."""
    def greets() -> bool:
        try:
            with _connect(port, "", host) as sock:
                sock.settimeout(2)
                return sock.makefile("rb").readline().startswith(b"* OK")
        except OSError:
            return False
    wait_for(greets, 30, what="an IMAP greeting")


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its children (the IMAP workers) so far."""
    total = 0
    for p in [pid] + child_pids(pid):
        try:
            total += _ticks(p)
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")
