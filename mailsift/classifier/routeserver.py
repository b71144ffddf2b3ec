"""The server side of the classify socket (the wire format: mailsift/classifier/route.py).

`RouteServer(sock, score)` serves a bound, listening unix socket in threads: one thread
accepts, one thread per client (the milter's own model: `score` is called from these threads,
as libmilter's connection threads call the scanner). Nothing a client does can exhaust the
daemon:

- at most `max_clients` connections are served at once; one more is answered `BUSY` and
  closed at once (its `mailsift classify` then scores in-process);
- each connection has `deadline` seconds for the whole exchange (request line, message, reply);
  a client that dawdles is dropped;
- the request line is at most 256 bytes; of the message (at most 64 MiB) at most
  max_bytes + 1 bytes are kept, the rest read and dropped; a request for a max_bytes above the
  daemon's own (`max_bytes`: its [classifier] max_bytes, at least the default) is refused with
  ERR (that classify then scores in-process), so at most max_clients * (max_bytes + 1) bytes
  of messages are held at once.

The socket's mode and group are the daemon's business (`[classifier] socket_mode`,
`socket_group`, applied by mailsift.daemon.bind like the milter's and serve's sockets).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Callable

from mailsift.classifier.route import (MAX_LINE, BadRequest, Request, RouteReply, encode_reply, encode_status,
                                       parse_request_line)
from mailsift.classifier.settings import ClassifierSettings
from mailsift.verdict import Verdict, verdict_headers

log = logging.getLogger("mailsift.classifier.route")

MAX_CLIENTS = 16
DEADLINE = 10.0

# (raw, required, unsure_points, max_bytes) -> the Verdict `mailsift classify` would print
Score = Callable[[bytes, float, float, int], Verdict]


def reply_for(verdict: Verdict) -> RouteReply:
    return RouteReply(verdict.label, verdict.probability, verdict.score, verdict.required,
                      verdict_headers(verdict).headers)


def close_unix(sock: socket.socket) -> None:
    """Close a listening unix socket and remove its file (best effort)."""
    try:
        name = sock.getsockname()
    except OSError:
        name = ""
    sock.close()
    if isinstance(name, str) and name:
        try:
            os.unlink(name)
        except OSError:
            pass


class _Expired(Exception):
    pass


class RouteServer:
    """Serves the classify socket until stop()."""

    def __init__(self, sock: socket.socket, score: Score, max_clients: int = MAX_CLIENTS,
                 deadline: float = DEADLINE, max_bytes: int | None = None) -> None:
        self.sock = sock
        self.score = score
        self.deadline = deadline
        self.max_clients = max_clients
        self._slots = threading.BoundedSemaphore(max_clients)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.defaults = ClassifierSettings()  # for what a client's config leaves unset
        self.max_bytes = max(max_bytes or 0, self.defaults.max_bytes)
        self.served = 0
        self.refused = 0

    def start(self) -> "RouteServer":
        self.sock.settimeout(0.5)  # accept() wakes up to notice stop()
        self._thread = threading.Thread(target=self._accept_loop, name="classify-socket", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting (clients being served finish on their own), close the socket and
        remove its file (best effort: the directory may be root's)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        close_unix(self.sock)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if self._stop.is_set() or self.sock.fileno() < 0:
                    return
                log.warning("classify socket: accept failed: %s", exc)
                time.sleep(0.1)  # EMFILE and the like: do not spin
                continue
            if not self._slots.acquire(blocking=False):
                self.refused += 1
                self._send_quietly(conn, encode_status("BUSY"))
                continue
            try:
                threading.Thread(target=self._serve, args=(conn,), name="classify-client", daemon=True).start()
            except RuntimeError:  # cannot start a thread: refuse, never fail the daemon
                self._slots.release()
                self._send_quietly(conn, encode_status("BUSY"))

    @staticmethod
    def _send_quietly(conn: socket.socket, data: bytes) -> None:
        try:
            conn.setblocking(False)
            conn.send(data)
        except OSError:
            pass
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.deadline
        try:
            with conn:
                try:
                    req, raw = self._read_request(conn, end)
                except BadRequest as exc:
                    self._send(conn, encode_status("ERR", str(exc)), end)
                    return
                d = self.defaults
                verdict = self.score(raw, d.required if req.required is None else req.required,
                                     d.unsure_points if req.unsure_points is None else req.unsure_points,
                                     d.max_bytes if req.max_bytes is None else req.max_bytes)
                self._send(conn, encode_reply(reply_for(verdict)), end)
                self.served += 1
        except (_Expired, OSError) as exc:
            log.debug("classify socket: client dropped: %r", exc)
        except Exception:
            log.exception("classify socket: request failed")
        finally:
            self._slots.release()

    @staticmethod
    def _wait(conn: socket.socket, end: float) -> None:
        left = end - time.monotonic()
        if left <= 0:
            raise _Expired("deadline")
        conn.settimeout(left)

    def _read_request(self, conn: socket.socket, end: float) -> tuple[Request, bytes]:
        buf = b""
        while b"\n" not in buf:
            if len(buf) > MAX_LINE:
                raise BadRequest("request line too long")
            self._wait(conn, end)
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                raise _Expired("deadline") from None
            if not chunk:
                raise _Expired("client closed the connection")
            buf += chunk
        line, _, rest = buf.partition(b"\n")
        if len(line) > MAX_LINE:
            raise BadRequest("request line too long")
        req = parse_request_line(line)
        if req.max_bytes is not None and req.max_bytes > self.max_bytes:
            raise BadRequest(f"max_bytes above the daemon's {self.max_bytes}")
        if len(rest) > req.length:
            raise BadRequest("more bytes than the announced length")
        keep = min(req.length, (self.defaults.max_bytes if req.max_bytes is None else req.max_bytes) + 1)
        body = bytearray(keep)
        view = memoryview(body)
        got = min(len(rest), keep)
        view[:got] = rest[:got]
        seen = len(rest)
        scratch = memoryview(bytearray(65536)) if req.length > keep else None
        while seen < req.length:
            self._wait(conn, end)
            try:
                if got < keep:
                    n = conn.recv_into(view[got:])
                    got += n
                else:  # beyond what the classifier reads: read and drop
                    assert scratch is not None
                    n = conn.recv_into(scratch[: req.length - seen])
            except TimeoutError:
                raise _Expired("deadline") from None
            if n == 0:
                raise _Expired("client closed the connection mid-message")
            seen += n
        return req, bytes(body)

    def _send(self, conn: socket.socket, data: bytes, end: float) -> None:
        self._wait(conn, end)
        try:
            conn.sendall(data)
        except TimeoutError:
            raise _Expired("deadline") from None


def model_scorer(models: object) -> Score:
    """Score as `mailsift classify` does in-process (mailsift.milter.scan, no virus scan) with
    the model `models` holds now (a ModelHolder: the milter's, reloaded as it reloads)."""
    from mailsift.milter.scan import MessageScanner

    def score(raw: bytes, required: float, unsure_points: float, max_bytes: int) -> Verdict:
        scanner = MessageScanner(None, models, required=required, virus_scan=False,  # type: ignore[arg-type]
                                 max_bytes=max_bytes, unsure_points=unsure_points)
        return scanner.score(raw, False)
    return score
