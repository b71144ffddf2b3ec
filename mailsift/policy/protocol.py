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


@dataclass
class RequestParser:
    """Incremental parser: feed it bytes, get back complete requests (dicts of str)."""

    max_line: int = MAX_LINE
    max_request: int = MAX_REQUEST
    max_attributes: int = MAX_ATTRIBUTES
    _buf: bytearray = field(default_factory=bytearray)
    _attrs: dict[str, str] = field(default_factory=dict)
    _size: int = 0

    @property
    def pending(self) -> bool:
        """True when part of a request has arrived but not its end (a truncated request)."""
        return bool(self._buf) or bool(self._attrs)

    def feed(self, data: bytes) -> list[dict[str, str]]:
        self._buf += data
        done: list[dict[str, str]] = []
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl < 0:
                break
            line = bytes(self._buf[start:nl])
            start = nl + 1
            try:
                request = self._line(line)
            except MalformedRequest as exc:
                exc.requests = done
                raise
            if request is not None:
                done.append(request)
        del self._buf[:start]
        if len(self._buf) > self.max_line:
            exc = MalformedRequest(f"line longer than {self.max_line} bytes")
            exc.requests = done
            raise exc
        return done

    def _line(self, line: bytes) -> dict[str, str] | None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            if not self._attrs:
                raise MalformedRequest("empty request")
            request, self._attrs, self._size = self._attrs, {}, 0
            check_request(request)
            return request
        if len(line) > self.max_line:
            raise MalformedRequest(f"line longer than {self.max_line} bytes")
        self._size += len(line) + 1
        if self._size > self.max_request:
            raise MalformedRequest(f"request larger than {self.max_request} bytes")
        if len(self._attrs) >= self.max_attributes:
            raise MalformedRequest(f"more than {self.max_attributes} attributes")
        name, sep, value = line.partition(b"=")
        if not sep:
            raise MalformedRequest(f"line without '=': {_show(line)}")
        if not name or not _is_name(name):
            raise MalformedRequest(f"bad attribute name: {_show(name)}")
        if b"\0" in value:
            raise MalformedRequest(f"NUL byte in the value of {name.decode()}")
        # Postfix sends UTF-8 (SMTPUTF8) or ASCII; anything else is kept, not refused.
        self._attrs[name.decode("ascii")] = value.decode("utf-8", errors="replace")
        return None


_NAME = re.compile(rb"[A-Za-z0-9_.-]+")


def _is_name(name: bytes) -> bool:
    return _NAME.fullmatch(name) is not None


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
