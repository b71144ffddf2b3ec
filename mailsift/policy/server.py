"""The policy service: asyncio, on a unix socket or TCP, many requests per connection.

One connection per Postfix smtpd process; each request gets exactly one reply. A malformed
request closes its connection without a reply (Postfix's rule) and is logged; no fault in one
connection touches another, and a fault of ours answers DUNNO rather than blocking mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

from mailsift.ops import metrics
from mailsift.policy.greylist import DUNNO, Greylister
from mailsift.policy.protocol import MalformedRequest, RequestParser, format_reply

log = logging.getLogger("mailsift.policy")

READ_CHUNK = 64 * 1024
PURGE_INTERVAL = 3600.0


@dataclass(frozen=True)
class Listen:
    kind: str  # "unix" or "inet"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"inet:{self.host}:{self.port}"


def parse_listen(spec: str) -> Listen:
    """`unix:PATH`, `inet:PORT@HOST`, `inet:HOST:PORT`, `inet:[V6]:PORT` or `inet:PORT`
    (loopback). Raises ValueError."""
    if spec.startswith("unix:"):
        path = spec[len("unix:"):]
        if not path:
            raise ValueError("unix: needs a socket path")
        return Listen("unix", path=path)
    if spec.startswith("inet:"):
        rest = spec[len("inet:"):]
        if "@" in rest:
            port_s, host = rest.split("@", 1)
        elif rest.startswith("["):
            host, _, port_s = rest[1:].partition("]:")
        elif rest.count(":") == 1:
            host, port_s = rest.split(":")
        else:
            host, port_s = "127.0.0.1", rest
        host = host.strip("[]") or "127.0.0.1"
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(f"bad port in {spec!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"bad port in {spec!r}")
        return Listen("inet", host=host, port=port)
    raise ValueError(f"socket must be unix:PATH or inet:PORT@HOST, not {spec!r}")


@dataclass(eq=False)
class _Connection:
    peer: str
    writer: asyncio.StreamWriter
    last_active: float
    last_prepend_instance: str | None = None


class PolicyServer:
    def __init__(self, greylister: Greylister, listen: Listen, socket_mode: int = 0o666,
                 idle_timeout: float = 600.0, max_connections: int = 1000) -> None:
        self.greylister = greylister
        self.max_connections = max_connections
        self._refused_logged = 0.0
        self.listen = listen
        self.socket_mode = socket_mode
        self.idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._socket_ino: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[_Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self.requests = 0

    async def start(self) -> None:
        if self.listen.kind == "unix":
            path = Path(self.listen.path)
            _remove_stale_socket(path)
            self._server = await asyncio.start_unix_server(self._handle, path=str(path),
                                                           limit=READ_CHUNK)
            os.chmod(path, self.socket_mode)
            self._socket_ino = path.stat().st_ino
        else:
            self._server = await asyncio.start_server(self._handle, host=self.listen.host,
                                                      port=self.listen.port, limit=READ_CHUNK,
                                                      reuse_address=True)
        self._watchdog = asyncio.create_task(self._close_idle())
        log.info("mailsift policy listening on %s", self.bound())

    async def _close_idle(self) -> None:
        """Close connections idle longer than idle_timeout (one timer for all of them)."""
        loop = asyncio.get_running_loop()
        interval = min(10.0, self.idle_timeout / 2)
        while True:
            await asyncio.sleep(interval)
            limit = loop.time() - self.idle_timeout
            for conn in [c for c in self._conns if c.last_active < limit]:
                log.info("closing connection from %s idle for %ss", conn.peer, self.idle_timeout)
                conn.writer.close()

    def bound(self) -> str:
        if self.listen.kind == "unix" or self._server is None:
            return str(self.listen)
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"inet:{host}:{port}"

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None
        if self.listen.kind == "unix" and self._socket_ino is not None:
            path = Path(self.listen.path)
            with contextlib.suppress(OSError):
                if path.stat().st_ino == self._socket_ino:
                    path.unlink()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        loop = asyncio.get_running_loop()
        conn = _Connection(_peer_name(writer), writer, loop.time())
        if len(self._conns) >= self.max_connections:
            if loop.time() - self._refused_logged > 10:
                self._refused_logged = loop.time()
                log.warning("%d connections open (max_connections): closing new ones, from %s",
                            len(self._conns), conn.peer)
            writer.close()
            if task is not None:
                self._tasks.discard(task)
            return
        self._conns.add(conn)
        parser = RequestParser()
        try:
            while True:
                data = await reader.read(READ_CHUNK)
                conn.last_active = loop.time()
                if not data:
                    if parser.pending:
                        log.warning("connection from %s closed in the middle of a request", conn.peer)
                    break
                try:
                    requests = parser.feed(data)
                    malformed = None
                except MalformedRequest as exc:
                    requests, malformed = exc.requests, exc
                for request in requests:
                    writer.write(format_reply(await self._answer(request, conn)))
                if requests:
                    await writer.drain()
                if malformed is not None:
                    log.warning("malformed request from %s: %s; closing the connection without a reply",
                                conn.peer, malformed)
                    break
        except (ConnectionError, OSError) as exc:
            log.info("connection from %s lost: %s", conn.peer, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._conns.discard(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(self, request: dict[str, str], conn: _Connection) -> str:
        self.requests += 1
        try:
            decision = await self.greylister.decide(request)
        except Exception:  # our fault: never block mail for it
            log.exception("policy check failed for %r; answering DUNNO", _brief(request))
            metrics.greylist("error", DUNNO)
            return DUNNO
        action = decision.action
        if decision.prepends:
            # One X-Greylist per message even when several recipients pass at once.
            instance = request.get("instance") or None
            if instance is not None and instance == conn.last_prepend_instance:
                action = DUNNO
            conn.last_prepend_instance = instance
        metrics.greylist(decision.reason, action)
        level = logging.INFO if decision.reason in ("new", "early", "passed") else logging.DEBUG
        if log.isEnabledFor(level):
            t = decision.triplet
            log.log(level, "%s: reason=%s client=%s[%s] sender=<%s> recipient=<%s> action=%s",
                    request.get("queue_id") or "NOQUEUE", decision.reason,
                    request.get("client_name", ""), request.get("client_address", ""),
                    t.sender if t else request.get("sender", ""),
                    t.recipient if t else request.get("recipient", ""), action)
        return action

    async def purge_forever(self, interval: float = PURGE_INTERVAL) -> None:
        while True:
            try:
                n = await self.greylister.purge()
                if n:
                    log.info("purged %d expired greylist entries", n)
            except Exception as exc:  # noqa: BLE001 - purging is best effort
                log.warning("purging the greylist failed: %s", exc)
            await asyncio.sleep(interval)


def _peer_name(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    if isinstance(peer, tuple):
        return f"{peer[0]}:{peer[1]}"
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family == socket.AF_UNIX:
        with contextlib.suppress(OSError):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
            pid = int.from_bytes(creds[:4], "little")
            return f"unix(pid {pid})"
        return "unix"
    return str(peer)


def _brief(request: dict[str, str]) -> dict[str, str]:
    keys = ("client_address", "sender", "recipient", "queue_id")
    return {k: request[k][:200] for k in keys if k in request}


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket left by a dead server; refuse to replace a live one or a non-socket."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        try:
            s.connect(str(path))
        except OSError:
            path.unlink()
            return
    raise OSError(f"another server is listening on {path}")


def drop_privileges(user: str, sqlite_path: str | None) -> None:
    """When running as root: become `user`, creating a missing SQLite directory for it first."""
    import pwd

    if os.geteuid() != 0:
        return
    if not user:
        log.warning("running as root: set [policy] user to run unprivileged")
        return
    pw = pwd.getpwnam(user)
    if sqlite_path:
        parent = Path(sqlite_path).parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o750)
            os.chown(parent, pw.pw_uid, pw.pw_gid)
    os.initgroups(pw.pw_name, pw.pw_gid)
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)
    log.info("running as %s (uid %d)", pw.pw_name, pw.pw_uid)


async def serve(greylister: Greylister, listen: Listen, socket_mode: int = 0o666,
                idle_timeout: float = 600.0, user: str = "", max_connections: int = 1000) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    server = PolicyServer(greylister, listen, socket_mode, idle_timeout, max_connections)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", listen, exc)
        await greylister.store.close()
        return 1
    try:
        db = greylister.settings.db
        drop_privileges(user, db[len("sqlite:"):] if db.startswith("sqlite:") else None)
    except (OSError, KeyError) as exc:
        log.error("cannot run as user %r: %s", user, exc)
        await server.close()
        return 1
    purger = asyncio.create_task(server.purge_forever())
    try:
        await stop.wait()
        log.info("stopping after %d requests", server.requests)
    finally:
        purger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purger
        await server.close()
        await greylister.store.close()
    return 0
