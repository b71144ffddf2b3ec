"""The classify socket: `mailsift classify` asks a running daemon for a verdict (like spamc/spamd).

A pipeline that runs one process per message (procmail, maildrop, a Sieve filter, a shell
loop) pays for loading the model in every process; through the socket it pays for a connect.
The daemon that loaded the model (`mailsift milter`, when `[classifier] socket` is set) serves
it; `mailsift classify` uses it when the socket is configured and answers, and scores
in-process otherwise. Both give the same verdict: the request carries the client's own
`required`, `unsure_points` and `max_bytes` (`-` for one its config does not set: the daemon
then uses the built-in default, as `classify` would), and the daemon scores with the milter's
model exactly as `classify` does in-process (virus scan off).

One message per connection. The request is one ASCII line and the message:

    CLASSIFY MAILSIFT/1 <length> <required> <unsure_points> <max_bytes>\\n<length bytes>

The classifier reads no more than max_bytes of a message and marks a longer one partial: the
client sends at most max_bytes + 1 bytes (when it knows max_bytes; else at most MAX_MESSAGE),
and the daemon keeps at most max_bytes + 1 of what it reads. The reply is one line and a body:

    MAILSIFT/1 OK <length>\\n<length bytes>     the verdict (below)
    MAILSIFT/1 ERR <length>\\n<reason>          a bad request
    MAILSIFT/1 BUSY 0\\n                        every client slot is taken

The verdict body is UTF-8 lines `KEY<TAB>VALUE`: `label`, `probability` (`-` when no model
could score), `score`, `required`, then one `header<TAB>NAME<TAB>VALUE` per header the milter
would add, in order (backslash, CR and LF in a value escaped as \\\\, \\r, \\n).

This module is the client side and the wire format; it imports only the standard library's
socket (the client must start in a few milliseconds: no numpy, no model). The server is
mailsift/classifier/routeserver.py.
"""

from __future__ import annotations

import socket

MAGIC = b"MAILSIFT/1"
REQUEST_VERB = b"CLASSIFY"
MAX_LINE = 256  # bytes of a request or reply line
MAX_MESSAGE = 64 * 1024 * 1024  # the most a request may carry (the daemon keeps max_bytes + 1)
MAX_REPLY = 1024 * 1024
CLIENT_TIMEOUT = 10.0  # seconds for the whole exchange, seen from the client


class RouteReply:
    """The daemon's verdict, as `classify` prints it. (Plain classes here: making three
    typing.NamedTuple classes cost the client 5 ms at every start, by cProfile, under load.)"""

    __slots__ = ("label", "probability", "score", "required", "headers")

    def __init__(self, label: str, probability: float | None, score: float, required: float,
                 headers: tuple[tuple[str, str], ...]) -> None:
        self.label = label
        self.probability = probability
        self.score = score
        self.required = required
        self.headers = headers


class RouteError(Exception):
    """The daemon did not answer with a verdict (the message says why)."""


class BadRequest(ValueError):
    """A request the server refuses (the message is the reason it sends back)."""


def socket_path(value: str) -> str | None:
    """The socket's path for a `[classifier] socket` value: "" (off) -> None, "unix:/PATH"
    or "/PATH" -> "/PATH". Raises ValueError."""
    value = value.strip()
    if not value or value == "off":
        return None
    path = value[len("unix:"):] if value.startswith("unix:") else value
    if not path.startswith("/"):
        raise ValueError(f"{value!r}: expected an absolute path or unix:/PATH (or \"\" for none)")
    if "\0" in path or len(path.encode()) > 107:
        raise ValueError(f"{value!r}: not a usable unix socket path (at most 107 bytes)")
    return path


# -- the wire format ------------------------------------------------------------------------

def encode_request(raw: bytes, required: float | None, unsure_points: float | None,
                   max_bytes: int | None) -> bytes:
    """None: not set by the client's config (the daemon uses the built-in default)."""
    body = raw[: MAX_MESSAGE if max_bytes is None else min(max_bytes + 1, MAX_MESSAGE)]
    values = " ".join("-" if v is None else repr(v) for v in (required, unsure_points, max_bytes))
    return f"CLASSIFY MAILSIFT/1 {len(body)} {values}\n".encode("ascii") + body


class Request:
    """A parsed request line; None: the client leaves that value to the daemon's default."""

    __slots__ = ("length", "required", "unsure_points", "max_bytes")

    def __init__(self, length: int, required: float | None, unsure_points: float | None,
                 max_bytes: int | None) -> None:
        self.length = length
        self.required = required
        self.unsure_points = unsure_points
        self.max_bytes = max_bytes


def _number(text: bytes, kind: type) -> float | int | None:
    if text == b"-":
        return None
    try:
        return kind(text)  # type: ignore[no-any-return]
    except ValueError:
        raise BadRequest(f"bad number {text[:20]!r} in the request line") from None


def parse_request_line(line: bytes) -> Request:
    """The request line (without its LF). Raises BadRequest."""
    parts = line.split(b" ")
    if len(parts) != 6 or parts[0] != REQUEST_VERB or parts[1] != MAGIC:
        raise BadRequest("expected: CLASSIFY MAILSIFT/1 LENGTH REQUIRED UNSURE_POINTS MAX_BYTES")
    if not parts[2].isdigit():
        raise BadRequest("bad length in the request line")
    length = int(parts[2])
    required, unsure, max_bytes = _number(parts[3], float), _number(parts[4], float), _number(parts[5], int)
    if required is not None and not 0 < required < 1e6:  # also refuses nan
        raise BadRequest("required must be positive")
    if unsure is not None and not 0 <= unsure < 1e6:
        raise BadRequest("unsure_points must not be negative")
    if max_bytes is not None and not 1024 <= max_bytes < MAX_MESSAGE:
        raise BadRequest(f"max_bytes must be between 1024 and {MAX_MESSAGE - 1}")
    if length > (MAX_MESSAGE if max_bytes is None else min(max_bytes + 1, MAX_MESSAGE)):
        raise BadRequest("length must be at most max_bytes + 1")
    return Request(length, required, unsure, max_bytes)  # type: ignore[arg-type]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def _unescape(value: str) -> str:
    if "\\" not in value:
        return value
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append({"r": "\r", "n": "\n"}.get(value[i + 1], value[i + 1]))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode_reply(reply: RouteReply) -> bytes:
    prob = "-" if reply.probability is None else repr(reply.probability)
    lines = [f"label\t{reply.label}", f"probability\t{prob}", f"score\t{reply.score!r}",
             f"required\t{reply.required!r}"]
    lines += [f"header\t{_escape(k)}\t{_escape(v)}" for k, v in reply.headers]
    body = ("\n".join(lines) + "\n").encode("utf-8")
    return b"MAILSIFT/1 OK %d\n" % len(body) + body


def encode_status(status: str, text: str = "") -> bytes:
    body = text.encode("utf-8")
    return f"MAILSIFT/1 {status} {len(body)}\n".encode("ascii") + body


def decode_verdict(body: bytes) -> RouteReply:
    """The verdict body of an OK reply. Raises RouteError."""
    fields: dict[str, str] = {}
    headers: list[tuple[str, str]] = []
    try:
        for line in body.decode("utf-8").split("\n"):
            if not line:
                continue
            key, _, value = line.partition("\t")
            if key == "header":
                name, _, text = value.partition("\t")
                headers.append((_unescape(name), _unescape(text)))
            else:
                fields[key] = value
        prob = fields["probability"]
        return RouteReply(fields["label"], None if prob == "-" else float(prob), float(fields["score"]),
                          float(fields["required"]), tuple(headers))
    except (KeyError, ValueError) as exc:
        raise RouteError(f"malformed verdict from the daemon: {exc}") from None


# -- the client ------------------------------------------------------------------------------

def _read_reply(sock: socket.socket) -> tuple[str, bytes]:
    buf = b""
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            raise RouteError("the daemon closed the connection without a reply")
        buf += chunk
        if len(buf) > MAX_LINE + MAX_REPLY:
            raise RouteError("reply too long")
    line, _, rest = buf.partition(b"\n")
    parts = line.split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC or not parts[2].isdigit():
        raise RouteError(f"unexpected reply {line[:80]!r}")
    length = int(parts[2])
    if length > MAX_REPLY:
        raise RouteError("reply too long")
    while len(rest) < length:
        chunk = sock.recv(max(4096, length - len(rest)))
        if not chunk:
            raise RouteError("the daemon closed the connection mid-reply")
        rest += chunk
    return parts[1].decode("ascii", "replace"), rest[:length]


def classify(path: str, raw: bytes, required: float | None, unsure_points: float | None,
             max_bytes: int | None, timeout: float = CLIENT_TIMEOUT) -> RouteReply:
    """Ask the daemon at `path` for the verdict of `raw` (None for a setting the client's
    config does not set). Raises RouteError (no socket, no answer, busy, refused, no model)
    — the caller then scores in-process."""
    if max_bytes is not None and max_bytes + 1 > MAX_MESSAGE:
        raise RouteError("max_bytes is beyond what the socket carries")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        try:
            sock.sendall(encode_request(raw, required, unsure_points, max_bytes))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered early (BUSY, ERR) and closed: read why
        status, body = _read_reply(sock)
    except OSError as exc:  # refused, missing, timed out, reset
        raise RouteError(f"{path}: {exc.strerror or exc}") from None
    finally:
        sock.close()
    if status != "OK":
        raise RouteError(f"the daemon answered {status}" + (f": {body.decode('utf-8', 'replace')}" if body else ""))
    return decode_verdict(body)


# -- the quick path's settings -----------------------------------------------------------------

def _setting(table: dict[str, object], key: str, kind: type) -> tuple[bool, object]:
    value = table.get(key)
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        return False, None
    return True, float(value) if kind is float else value


def quick_settings(table: object, required: float | None) -> tuple[str, float | None, float | None,
                                                                    int | None] | None:
    """(socket path, required, unsure_points, max_bytes) from a config file's [classifier]
    table, for `mailsift classify` before the config module is loaded; None when there is no
    socket or a value is not what [classifier] takes (the full path then reports it)."""
    if not isinstance(table, dict) or not isinstance(table.get("socket"), str):
        return None
    try:
        path = socket_path(table["socket"])
    except ValueError:
        return None
    ok1, req = _setting(table, "required", float)
    ok2, unsure = _setting(table, "unsure_points", float)
    ok3, max_bytes = _setting(table, "max_bytes", int)
    if path is None or not (ok1 and ok2 and ok3):
        return None
    return path, required if required is not None else req, unsure, max_bytes  # type: ignore[return-value]
