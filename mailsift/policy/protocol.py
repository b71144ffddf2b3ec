"""The Postfix SMTP access policy delegation protocol, parsed and serialised on bytes alone.

A request is a block of `name=value` lines ended by an empty line; the reply is one
`action=...` line followed by an empty line. Many requests may follow on one connection.
Postfix's rule for a malformed request: the server closes the connection without replying.

Nothing here does I/O: `RequestParser.feed()` takes whatever bytes arrived and returns the
complete requests found so far, or raises `MalformedRequest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# One attribute line (without its newline) longer than this is malformed. Postfix's own
# attributes are short; the longest are certificate subjects and issuers.
MAX_LINE = 8 * 1024
# A whole request larger than this, or with more attributes, is malformed.
MAX_REQUEST = 64 * 1024
MAX_ATTRIBUTES = 256

POLICY_REQUEST = "smtpd_access_policy"


class MalformedRequest(ValueError):
    """The peer broke the protocol: the connection must be closed without a reply.

    `requests` holds the complete requests that arrived before the fault (Postfix never
    pipelines, so this is nearly always empty)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.requests: list[dict[str, str]] = []


# Complete attribute lines: a name, '=', a value without newline or NUL.
_LINES = re.compile(rb"(?:[A-Za-z0-9_.-]+=[^\n\0]*\n)*")
_NAME = re.compile(rb"[A-Za-z0-9_.-]+")


@dataclass
class RequestParser:
    """Incremental parser: feed it bytes, get back complete requests (dicts of str).

    Lines may end in CRLF. Bytes are checked as they arrive, so junk, an overlong line or
    an oversized request is refused before its end arrives."""

    max_line: int = MAX_LINE
    max_request: int = MAX_REQUEST
    max_attributes: int = MAX_ATTRIBUTES
    _buf: bytearray = field(default_factory=bytearray)
    _checked: int = 0  # bytes at the start of _buf known to be well-formed complete lines

    @property
    def pending(self) -> bool:
        """True when part of a request has arrived but not its end (a truncated request)."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        done: list[dict[str, str]] = []
        try:
            self._feed(data, done)
        except MalformedRequest as exc:
            exc.requests = done
            raise
        return done

    def _feed(self, data: bytes, done: list[dict[str, str]]) -> None:
        buf = self._buf
        split_crlf = buf[-1:] == b"\r"
        buf += data
        if split_crlf or b"\r" in data:
            buf[:] = buf.replace(b"\r\n", b"\n")
        while buf:
            if buf[0] == 0x0A:
                raise MalformedRequest("empty request")
            end = buf.find(b"\n\n", max(0, self._checked - 1))
            if end < 0:
                self._check_partial()
                return
            self._check_lines(end + 1)
            block = bytes(buf[:end + 1])
            del buf[:end + 2]
            self._checked = 0
            if block.count(b"\n") > self.max_attributes:
                raise MalformedRequest(f"more than {self.max_attributes} attributes")
            text = block.decode("utf-8", errors="replace")  # kept, not refused
            request: dict[str, str] = {}
            for line in text[:-1].split("\n"):
                name, _, value = line.partition("=")
                request[name] = value
            check_request(request)
            done.append(request)

    def _check_lines(self, upto: int) -> None:
        """Check the complete lines in _buf[_checked:upto] (upto just after a newline)."""
        buf = self._buf
        if upto > self.max_request:
            raise MalformedRequest(f"request larger than {self.max_request} bytes")
        if _LINES.fullmatch(buf, self._checked, upto) is None:
            _diagnose(bytes(buf[self._checked:upto]))
        if upto - self._checked > self.max_line:
            longest = max(len(line) for line in bytes(buf[self._checked:upto]).split(b"\n"))
            if longest > self.max_line:
                raise MalformedRequest(f"line longer than {self.max_line} bytes")
        self._checked = upto

    def _check_partial(self) -> None:
        buf = self._buf
        last_nl = buf.rfind(b"\n")
        if last_nl + 1 > self._checked:
            self._check_lines(last_nl + 1)
        if len(buf) - (last_nl + 1) > self.max_line:
            raise MalformedRequest(f"line longer than {self.max_line} bytes")
        if len(buf) > self.max_request:
            raise MalformedRequest(f"request larger than {self.max_request} bytes")
        if buf.count(b"\n", 0, self._checked) > self.max_attributes:
            raise MalformedRequest(f"more than {self.max_attributes} attributes")


def _diagnose(lines: bytes) -> None:
    """Raise the precise error for lines that failed the fast check."""
    for line in lines.split(b"\n")[:-1]:
        name, sep, value = line.partition(b"=")
        if not sep:
            raise MalformedRequest(f"line without '=': {_show(line)}")
        if _NAME.fullmatch(name) is None:
            raise MalformedRequest(f"bad attribute name: {_show(name)}")
        if b"\0" in value:
            raise MalformedRequest(f"NUL byte in the value of {name.decode()}")
    raise MalformedRequest("malformed attribute line")


def _show(data: bytes, limit: int = 60) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


def check_request(request: dict[str, str]) -> None:
    """A complete request must say what it is; only smtpd_access_policy exists today."""
    kind = request.get("request")
    if kind is None:
        raise MalformedRequest("request without a 'request' attribute")
    if kind != POLICY_REQUEST:
        raise MalformedRequest(f"unknown request type {kind!r}")


def parse_request(data: bytes) -> dict[str, str]:
    """Parse exactly one complete request (for tests and tools)."""
    parser = RequestParser()
    requests = parser.feed(data)
    if len(requests) != 1 or parser.pending:
        raise MalformedRequest("expected exactly one complete request")
    return requests[0]


def format_request(attrs: dict[str, str]) -> bytes:
    """Serialise a request as Postfix sends it (for clients, tests and benchmarks)."""
    out = []
    for name, value in attrs.items():
        if "\n" in name or "=" in name or "\n" in value:
            raise ValueError(f"attribute {name!r} cannot be sent")
        out.append(f"{name}={value}\n")
    out.append("\n")
    return "".join(out).encode("utf-8")


def format_reply(action: str) -> bytes:
    """`action=...` followed by the empty line that ends the reply."""
    if "\n" in action or "\r" in action:
        raise ValueError("an action is one line")
    return b"action=" + action.encode("utf-8") + b"\n\n"


def parse_reply(data: bytes) -> str:
    """The action of one reply (for clients and tests)."""
    text = data.decode("utf-8")
    if not text.endswith("\n\n"):
        raise MalformedRequest("reply not ended by an empty line")
    lines = text[:-2].split("\n")
    for line in lines:
        if line.startswith("action="):
            return line[len("action="):]
    raise MalformedRequest("reply without action")
