"""A small clamd client: INSTREAM over clamd's unix socket or TCP, with timeouts.

Over a unix socket it passes the message as a file descriptor instead (FILDES with a
memfd): clamd then scans it in place, without copying it into a temporary file, which
halves clamd's CPU per message and its latency under load (measured, bench notes in
docs/milter.md). A clamd that refuses FILDES is asked with INSTREAM from then on.

Every failure to get an answer (clamd down, refused, timed out, answered ERROR) raises
ScanError with a short reason; the caller decides the fault policy (tempfail or tag
`Unscanned`). A clean or infected answer becomes a VirusResult; clamd's alert that one of its
own limits was exceeded (`Heuristics.Limits.Exceeded.*`, with `AlertExceedsMax yes`) becomes
an unscanned, partial one.
"""

from __future__ import annotations

import array
import logging
import os
import re
import socket
import struct
from dataclasses import dataclass

from mailsift.verdict import VirusResult

CHUNK = 64 * 1024

log = logging.getLogger("mailsift.scanner")


class ScanError(Exception):
    """clamd could not give an answer. `reason` is short and safe for a header
    (no paths or addresses); str(exc) is the detail for the log."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(detail or reason)
        self.reason = reason


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


LIMITS_EXCEEDED = "Heuristics.Limits.Exceeded"
_REPLY_SUBJECT = re.compile(r"^(stream|fd\[\d+\]): (.*)$", re.S)
_CLEAN = VirusResult("clean")  # frozen: one for every clean answer


def parse_reply(reply: bytes) -> VirusResult:
    """Turn clamd's answer to (z)INSTREAM into a VirusResult; ERROR answers raise ScanError."""
    if reply.endswith(b": OK\0") and reply.count(b":") == 1:  # most answers: 2.2 -> 0.3 us
        return _CLEAN
    text = reply.rstrip(b"\0\r\n").decode("utf-8", "replace")
    m = _REPLY_SUBJECT.match(text)
    status = (m.group(2) if m else text).strip()
    if status == "OK":
        return VirusResult("clean")
    if status.endswith(" FOUND"):
        name = status[: -len(" FOUND")].strip() or "unknown"
        if name.startswith(LIMITS_EXCEEDED):
            # AlertExceedsMax: clamd stopped at one of its own limits (MaxFileSize, MaxScanSize,
            # MaxRecursion, ...) and read the rest unscanned. Without it clamd says OK there.
            return VirusResult("unscanned", reason=f"clamd limit: {name}", partial=True)
        return VirusResult("infected", name=name)
    if status.endswith("ERROR"):
        raise ScanError("clamd error", f"clamd error: {status[: -len('ERROR')].strip() or 'unknown'}")
    raise ScanError("clamd error", f"clamd gave an unexpected answer: {text[:80]!r}")


class ClamdClient:
    """One connection per request, so a restarted clamd is picked up at the next message."""

    def __init__(self, address: str | ClamdAddress, timeout: float = 30.0,
                 connect_timeout: float = 5.0, pass_fd: bool = True) -> None:
        self.address = parse_address(address) if isinstance(address, str) else address
        self.timeout = timeout
        self.connect_timeout = min(connect_timeout, timeout)
        self.pass_fd = pass_fd and self.address.family == socket.AF_UNIX and hasattr(os, "memfd_create")
        self._sndtimeo, self._rcvtimeo = _timeval(self.connect_timeout), _timeval(self.timeout)

    def _connect(self) -> socket.socket:
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        try:
            if self.address.family == socket.AF_UNIX:
                # A blocking socket with the kernel's timeouts: one system call per operation,
                # where Python's own timeouts put a poll() (and one more GIL hand-off, under
                # load) before each. A timeout then shows as EAGAIN (BlockingIOError). The
                # send timeout bounds connect() and FILDES's two small sends; _send_stream
                # raises it to `timeout` for its stream.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._sndtimeo)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._rcvtimeo)
                sock.connect(self.address.target)
            else:
                sock.settimeout(self.connect_timeout)
                sock.connect(self.address.target)
                sock.settimeout(self.timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (socket.timeout, BlockingIOError):
            sock.close()
            raise ScanError("clamd timeout", f"clamd at {self.address} timed out on connect") from None
        except OSError as exc:
            sock.close()
            raise ScanError("clamd unreachable", f"clamd at {self.address} unreachable: {exc.strerror or exc}") from None
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
            raise ScanError("clamd error", "clamd closed the connection without an answer")
        return bytes(buf)

    def ping(self) -> bool:
        try:
            with self._connect() as sock:
                sock.sendall(b"zPING\0")
                return self._read_reply(sock).rstrip(b"\0\n") == b"PONG"
        except (ScanError, OSError):
            return False

    def scan_bytes(self, data: bytes | bytearray | memoryview) -> VirusResult:
        """Scan `data` with clamd (FILDES over a unix socket, else zINSTREAM)."""
        return self.start(data).result()

    def start(self, data: bytes | bytearray | memoryview) -> "PendingScan":
        """Hand `data` to clamd and return at once: clamd scans while the caller does other
        work (the milter scores the message meanwhile), and PendingScan.result() reads the
        answer. By then it is usually waiting, so the caller's thread is not put to sleep and
        woken again for it. Raises ScanError when clamd cannot be reached or take the data."""
        if self.pass_fd:
            return PendingScan(self, data, self._send_fd(data), fildes=True)
        return PendingScan(self, data, self._send_stream(data), fildes=False)

    def _send_fd(self, data: bytes | bytearray | memoryview) -> socket.socket:
        fd = os.memfd_create("mailsift-scan", os.MFD_CLOEXEC)
        try:
            view = memoryview(data)
            written = 0
            while written < len(view):  # pwrite leaves the offset at 0, where clamd reads from
                written += os.pwrite(fd, view[written:], written)
            sock = self._connect()
            try:
                sock.sendall(b"zFILDES\0")
                sock.sendmsg([b"\0"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
            except BaseException:
                sock.close()
                raise
            return sock  # the descriptor in flight keeps the memfd open after we close ours
        except OSError as exc:
            raise _io_error(exc, self.address) from None
        finally:
            os.close(fd)

    def _send_stream(self, data: bytes | bytearray | memoryview) -> socket.socket | bytes:
        """The socket to read clamd's answer from, or the answer itself when clamd gave it
        before taking the whole stream."""
        view = memoryview(data)
        sock = self._connect()
        try:
            if self.address.family == socket.AF_UNIX:  # the stream's sends may wait on clamd
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._rcvtimeo)
            sock.sendall(b"zINSTREAM\0")
            for start in range(0, len(view), CHUNK):
                chunk = view[start:start + CHUNK]
                sock.sendall(struct.pack("!L", len(chunk)) + chunk.tobytes())
            sock.sendall(struct.pack("!L", 0))
        except ConnectionError as exc:
            # clamd closes early when the stream exceeds its StreamMaxLength; it may still have
            # answered, so read what it said before calling it a fault.
            try:
                return self._read_reply(sock)
            except (ScanError, OSError):
                raise ScanError("clamd error", f"clamd at {self.address} dropped the connection: "
                                f"{exc.strerror or exc}") from None
            finally:
                sock.close()
        except OSError as exc:
            sock.close()
            raise _io_error(exc, self.address) from None
        return sock


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("@ll", whole, int((seconds - whole) * 1_000_000))


def _io_error(exc: OSError, address: ClamdAddress) -> ScanError:
    if isinstance(exc, (socket.timeout, BlockingIOError)):
        return ScanError("clamd timeout", f"clamd at {address} timed out")
    if isinstance(exc, ConnectionError):
        return ScanError("clamd error", f"clamd at {address} dropped the connection: {exc.strerror or exc}")
    return ScanError("clamd error", f"clamd at {address} failed: {exc.strerror or exc}")


class PendingScan:
    """A request clamd is working on; result() waits for its answer, once."""

    def __init__(self, client: ClamdClient, data: bytes | bytearray | memoryview,
                 sent: socket.socket | bytes, fildes: bool) -> None:
        self._client, self._data, self._sent, self._fildes = client, data, sent, fildes

    def result(self) -> VirusResult:
        sent, self._sent = self._sent, None
        if sent is None:
            raise RuntimeError("PendingScan.result() called twice")
        if isinstance(sent, bytes):
            reply = sent
        else:
            try:
                reply = self._client._read_reply(sent)
            except OSError as exc:
                raise _io_error(exc, self._client.address) from None
            finally:
                sent.close()
        if self._fildes and b"FILDES" in reply and b"ERROR" in reply:
            log.warning("clamd at %s refuses FILDES (%s); using INSTREAM", self._client.address,
                        reply.rstrip(b"\0\n").decode("utf-8", "replace")[:120])
            self._client.pass_fd = False
            return self._client.start(self._data).result()
        return parse_reply(reply)
