"""A small clamd client: INSTREAM over clamd's unix socket or TCP, with timeouts.

Every failure to get an answer (clamd down, refused, timed out, answered ERROR) raises
ScanError with a short reason; the caller decides the fault policy (tempfail or tag
`Unscanned`). A clean or infected answer becomes a VirusResult.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from mailsift.verdict import VirusResult

CHUNK = 64 * 1024


class ScanError(Exception):
    """clamd could not give an answer; str(exc) is a short reason for headers and logs."""


@dataclass(frozen=True)
class ClamdAddress:
    family: int  # socket.AF_UNIX or socket.AF_INET/AF_INET6
    target: str | tuple[str, int]

    def __str__(self) -> str:
        if self.family == socket.AF_UNIX:
            return f"unix:{self.target}"
        host, port = self.target  # type: ignore[misc]
        return f"{host}:{port}"


def parse_address(spec: str) -> ClamdAddress:
    """`unix:PATH`, `/abs/path`, `HOST:PORT` or `[v6]:PORT`."""
    spec = spec.strip()
    if spec.startswith("unix:"):
        path = spec[5:]
        if not path:
            raise ValueError(f"clamd address {spec!r}: empty socket path")
        return ClamdAddress(socket.AF_UNIX, path)
    if spec.startswith("/"):
        return ClamdAddress(socket.AF_UNIX, spec)
    if spec.startswith("tcp:"):
        spec = spec[4:]
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"clamd address {spec!r}: expected unix:PATH or HOST:PORT")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return ClamdAddress(family, (host, int(port)))


def parse_reply(reply: bytes) -> VirusResult:
    """Turn clamd's answer to (z)INSTREAM into a VirusResult; ERROR answers raise ScanError."""
    text = reply.rstrip(b"\0\r\n").decode("utf-8", "replace")
    _, _, status = text.partition(": ") if text.startswith("stream") else ("", "", text)
    status = status.strip()
    if status == "OK":
        return VirusResult("clean")
    if status.endswith(" FOUND"):
        return VirusResult("infected", name=status[: -len(" FOUND")].strip() or "unknown")
    if status.endswith("ERROR"):
        raise ScanError(f"clamd error: {status[: -len('ERROR')].strip() or 'unknown'}")
    raise ScanError(f"clamd gave an unexpected answer: {text[:80]!r}")


class ClamdClient:
    """One connection per request, so a restarted clamd is picked up at the next message."""

    def __init__(self, address: str | ClamdAddress, timeout: float = 30.0,
                 connect_timeout: float = 5.0) -> None:
        self.address = parse_address(address) if isinstance(address, str) else address
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)

    def _connect(self) -> socket.socket:
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.connect_timeout)
            sock.connect(self.address.target)
            sock.settimeout(self.timeout)
        except socket.timeout:
            sock.close()
            raise ScanError(f"clamd at {self.address} timed out on connect") from None
        except OSError as exc:
            sock.close()
            raise ScanError(f"clamd at {self.address} unreachable: {exc.strerror or exc}") from None
        if self.address.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    @staticmethod
    def _read_reply(sock: socket.socket, limit: int = 4096) -> bytes:
        buf = bytearray()
        while b"\0" not in buf and len(buf) < limit:
            part = sock.recv(limit)
            if not part:
                break
            buf += part
        if not buf:
            raise ScanError("clamd closed the connection without an answer")
        return bytes(buf)

    def ping(self) -> bool:
        try:
            with self._connect() as sock:
                sock.sendall(b"zPING\0")
                return self._read_reply(sock).rstrip(b"\0\n") == b"PONG"
        except (ScanError, OSError):
            return False

    def scan_bytes(self, data: bytes | bytearray | memoryview) -> VirusResult:
        """Stream `data` to clamd (zINSTREAM) and return its verdict."""
        view = memoryview(data)
        try:
            with self._connect() as sock:
                sock.sendall(b"zINSTREAM\0")
                for start in range(0, len(view), CHUNK):
                    chunk = view[start:start + CHUNK]
                    sock.sendall(struct.pack("!L", len(chunk)) + chunk.tobytes())
                sock.sendall(struct.pack("!L", 0))
                reply = self._read_reply(sock)
        except socket.timeout:
            raise ScanError(f"clamd at {self.address} timed out") from None
        except ConnectionError as exc:
            # clamd closes early when the stream exceeds its StreamMaxLength; it may still have
            # answered, but a broken pipe without an answer is a fault.
            raise ScanError(f"clamd at {self.address} dropped the connection: {exc.strerror or exc}") from None
        except OSError as exc:
            raise ScanError(f"clamd at {self.address} failed: {exc.strerror or exc}") from None
        return parse_reply(reply)
