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
import socket
from dataclasses import dataclass
from pathlib import Path

from mailsift import daemon
from mailsift.daemon import Listen
from mailsift.ops import metrics
from mailsift.policy.greylist import DUNNO, Greylister
from mailsift.policy.protocol import MalformedRequest, RequestParser, format_reply

log = logging.getLogger("mailsift.policy")

READ_CHUNK = 64 * 1024
PURGE_INTERVAL = 3600.0


def parse_listen(spec: str) -> Listen:
    """The policy socket in the listen grammar of mailsift/daemon.py (never off). Raises ValueError."""
    where = daemon.parse_listen(spec, allow_off=False)
    assert where is not None
    return where


@dataclass(eq=False)
class _Connection:
    peer: str
    writer: asyncio.StreamWriter
    last_active: float
    last_prepend_instance: str | None = None


class PolicyServer:
    def __init__(self, greylister: Greylister, listen: Listen, socket_mode: str = daemon.SOCKET_MODE,
                 idle_timeout: float = 600.0, max_connections: int = 1000,
                 socket_group: str | None = daemon.SOCKET_GROUP) -> None:
        self.greylister = greylister
        self.max_connections = max_connections
        self._refused_logged = 0.0
        self.listen = listen
        self.socket_mode = socket_mode
        self.socket_group = socket_group
        self.idle_timeout = idle_timeout
        self._server: asyncio.AbstractServer | None = None
        self._socket_ino: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._conns: set[_Connection] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self.requests = 0

    async def start(self) -> None:
        sock = daemon.bind(self.listen, self.socket_mode, self.socket_group)
        if self.listen.kind == "unix":
            self._server = await asyncio.start_unix_server(self._handle, sock=sock, limit=READ_CHUNK)
            self._socket_ino = Path(self.listen.path).stat().st_ino
        else:
            self._server = await asyncio.start_server(self._handle, sock=sock, limit=READ_CHUNK)
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
        return str(Listen("inet", host=host, port=port))

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


def drop_privileges(user: str, sqlite_path: str | None) -> None:
    """When running as root: become `user`, creating a missing SQLite directory for it first."""
    import pwd

    if user and os.geteuid() == 0 and sqlite_path:
        pw = pwd.getpwnam(user)
        parent = Path(sqlite_path).parent
        if not parent.exists():
            parent.mkdir(parents=True, mode=0o750)
            os.lchown(parent, pw.pw_uid, pw.pw_gid)
    daemon.drop_privileges(user)


async def serve(greylister: Greylister, listen: Listen, socket_mode: str = daemon.SOCKET_MODE,
                idle_timeout: float = 600.0, user: str = "", max_connections: int = 1000,
                socket_group: str | None = daemon.SOCKET_GROUP) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    server = PolicyServer(greylister, listen, socket_mode, idle_timeout, max_connections, socket_group)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    daemon.stop_on_signals(loop, stop.set)
    try:
        await server.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", listen, exc)
        await greylister.store.close()
        return 1
    try:
        db = greylister.settings.db
        drop_privileges(user, db[len("sqlite:"):] if db.startswith("sqlite:") else None)
    except (OSError, KeyError, daemon.DaemonError) as exc:
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
