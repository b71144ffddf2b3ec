"""The `mailsift serve` process: one asyncio loop, one listener per configured protocol.

Listeners come from [store] keys lmtp, pop3, pop3s, imap, imaps, lookup ("unix:PATH", "HOST:PORT"
or "off"). Each protocol's handler is named in PROTOCOLS and imported when its listener is
configured (a module that does not exist yet is skipped with a warning). A handler is

    async def handle(reader, writer, ctx: SessionContext) -> None

pop3s and imaps are implicit TLS: each accepted connection is wrapped with the TLS context.
Connections are accepted by `Listener`, which counts them against the caps of
serve/conncaps.py before anything else is spent on them.
SIGTERM (or SIGINT) closes the listeners, gives open sessions a few seconds, and exits 0.

With `imap_workers` > 0 (the default on a multi-core host) the imap/imaps listeners are bound
here and served by worker processes (serve/workers.py); the rest stays in this process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import importlib
import logging
import os
import socket
import ssl
import stat
from pathlib import Path
from typing import Any, Awaitable, Callable

from mailsift import daemon
from mailsift.ops import metrics
from mailsift.store.api import Store
from mailsift.store import quota
from mailsift.serve.conncaps import (ConnectionCaps, cap_address, current_nofile, is_loopback as _is_loopback,
                                     mailbox_cap, raise_nofile, refuse)
from mailsift.serve.context import SessionContext
from mailsift.store.settings import parse_listen, StoreSettings
from mailsift.store.users import Users
from mailsift.serve.workers import WORKER_PROTOCOLS, WorkerPool, bind_listener, worker_count

log = logging.getLogger("mailsift.serve")

PROTOCOLS: dict[str, str] = {
    "lmtp": "mailsift.protocols.lmtp:handle",
    "pop3": "mailsift.protocols.pop3:handle",
    "pop3s": "mailsift.protocols.pop3:handle",
    "imap": "mailsift.protocols.imap:handle",
    "imaps": "mailsift.protocols.imap:handle",
    "lookup": "mailsift.serve.socketmap:handle",
}
IMPLICIT_TLS = ("pop3s", "imaps")
NEEDS_TLS = ("pop3s", "imaps")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, SessionContext], Awaitable[None]]
GRACE_SECONDS = 5.0
WORKER_THREADS = 32
STREAM_LIMIT = 1024 * 1024
ACCEPT_BATCH = 64
ACCEPT_PAUSE = 0.5  # seconds a listener rests after the process ran out of descriptors


class ServeError(Exception):
    """The server cannot start as configured (the message says why)."""


def load_handler(spec: str) -> Handler | None:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, attr, None)


def build_tls(settings: StoreSettings) -> ssl.SSLContext | None:
    if not (settings.tls_cert and settings.tls_key):
        return None
    try:
        tls = importlib.import_module("mailsift.tls")
    except ModuleNotFoundError:
        log.warning("mailsift.tls is not available; TLS is off")
        return None
    try:
        return tls.server_context(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise ServeError(f"cannot load TLS certificate {settings.tls_cert} / {settings.tls_key}: {exc}") from None


class Listener:
    """One listening socket whose connections are accepted here, counted against the caps
    (serve/conncaps.py) before anything else is spent on them (no TLS handshake, no greeting),
    and served by `serve(proto, conn)`; refused ones are told so and closed. Has
    start_serving(), close() and wait_closed(), like an asyncio server."""

    def __init__(self, proto: str, sock: socket.socket, caps: ConnectionCaps,
                 serve: Callable[[str, socket.socket], Awaitable[None]]) -> None:
        self.proto = proto
        self.sock = sock
        self.caps = caps
        self.serve = serve
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.serving = False
        sock.setblocking(False)

    async def start_serving(self) -> None:
        self.loop = asyncio.get_running_loop()
        if not self.serving and self.sock.fileno() >= 0:
            self.serving = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _accept(self) -> None:
        assert self.loop is not None
        for _ in range(ACCEPT_BATCH):
            try:
                conn, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("%s: cannot accept a connection: %s; pausing %.1f s", self.proto,
                              exc.strerror or exc, ACCEPT_PAUSE)
                    self._pause()
                    return
                continue  # ECONNABORTED and the like: that client is gone
            address = cap_address(peer if isinstance(peer, tuple) else None)
            why = self.caps.admit(self.proto, address)
            if why is not None:
                log.warning("%s: refused a connection from %s: %s", self.proto,
                            address or "a local peer", why)
                refuse(self.proto, conn)
                continue
            task = self.loop.create_task(self._session(conn, address))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _pause(self) -> None:
        assert self.loop is not None
        self.loop.remove_reader(self.sock.fileno())
        self.serving = False
        self.loop.call_later(ACCEPT_PAUSE, self._resume)

    def _resume(self) -> None:
        if self.sock.fileno() >= 0 and not self.serving and self.loop is not None:
            self.serving = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    async def _session(self, conn: socket.socket, address: str | None) -> None:
        try:
            await self.serve(self.proto, conn)
        finally:
            self.caps.release(self.proto, address)

    def close(self) -> None:
        if self.serving and self.loop is not None and self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
        self.serving = False
        self.sock.close()

    async def wait_closed(self) -> None:
        return None


class Server:
    def __init__(self, settings: StoreSettings, store: Store | None = None, users: Users | None = None) -> None:
        self.settings = settings
        nofile = current_nofile()
        self.store = store or Store(settings.mail_root, hostname=settings.hostname or None,
                                    max_open=mailbox_cap(settings, nofile))
        self.caps = ConnectionCaps.from_settings(settings, nofile)
        self.users = users or Users(settings.users, settings.default_domain)
        self.store.quota_limit = quota.Limits(settings.quota_mb, getattr(self.users, "quota_mb", None))
        self.tls = build_tls(settings)
        self.shared: dict[str, Any] = {"hostname": settings.hostname or socket.getfqdn()}
        self.throttle = self._make_throttle()
        self.servers: list[Listener] = []
        self.sessions: set[asyncio.Task[None]] = set()
        self.unix_paths: list[Path] = []
        self.stopping = asyncio.Event()
        # Listeners bound here for the IMAP worker processes (serve/workers.py) to serve.
        # (accepted here, each connection handed to the worker with the fewest: serve/workers.py)
        self.handoff: dict[str, socket.socket] = {}
        self.handoff_protocols: tuple[str, ...] = ()

    def _make_throttle(self) -> Any:
        """The login gate (throttle and auth cache) this process's sessions share."""
        from mailsift.store.authgate import LoginGate
        return LoginGate.for_settings(self.settings)

    async def start(self) -> None:
        for proto, spec in PROTOCOLS.items():
            where = parse_listen(getattr(self.settings, proto))
            if where is None:
                continue
            handler = load_handler(spec)
            if handler is None:
                log.warning("%s: %s is not available yet; listener skipped", proto, spec)
                continue
            implicit = proto in IMPLICIT_TLS
            if implicit and self.tls is None:
                raise ServeError(f"{proto} needs tls_cert and tls_key in [store]")
            if proto in self.handoff_protocols:
                try:
                    self.handoff[proto] = bind_listener(where, self.settings.socket_mode,
                                                        self.settings.socket_group)
                except OSError as exc:
                    raise ServeError(f"{proto}: cannot listen on {where[0]}:{where[1]}: "
                                     f"{exc.strerror or exc}") from None
                if where[0] == "unix":
                    self.unix_paths.append(Path(str(where[1])))
                log.info("%s listening on %s:%s (served by the IMAP workers)", proto, *where)
                continue
            await self._listen(proto, where, handler, implicit)

    async def serve_accepted(self, proto: str, conn: socket.socket, handler: Handler, implicit: bool) -> None:
        """Serve one connection another process accepted (an IMAP worker's, handed over by the
        main process); returns when the session is over."""
        loop = asyncio.get_running_loop()
        on_connect = self._connection_handler(proto, handler, implicit)
        done = loop.create_future()

        async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await on_connect(reader, writer)
            finally:
                if not done.done():
                    done.set_result(None)

        reader = asyncio.StreamReader(limit=STREAM_LIMIT, loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, session, loop=loop)
        conn.setblocking(False)
        try:
            await loop.connect_accepted_socket(lambda: protocol, sock=conn, ssl=self.tls if implicit else None,
                                               ssl_handshake_timeout=self.settings.login_timeout if implicit else None)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as exc:  # a failed TLS handshake, a reset
            log.debug("%s connection failed before the session: %r", proto, exc)
            conn.close()
            return
        await done

    def _connection_handler(self, proto: str, handler: Handler, implicit: bool) -> Callable[..., Awaitable[None]]:
        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self.sessions.add(task)
            metrics.session(proto)
            peer = writer.get_extra_info("peername")
            ctx = SessionContext(store=self.store, users=self.users, settings=self.settings, tls=self.tls,
                                 implicit_tls=implicit, peer=peer if isinstance(peer, tuple) else "",
                                 is_loopback=_is_loopback(peer), protocol=proto, shared=self.shared,
                                 throttle=self.throttle)
            try:
                await handler(reader, writer, ctx)
            except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
                log.debug("%s session ended: %r", proto, exc)
            except asyncio.CancelledError:
                pass
            except Exception:
                log.exception("%s session failed", proto)
            finally:
                self.sessions.discard(task)
                try:
                    writer.close()
                except Exception:
                    pass

        return on_connect

    async def _listen(self, proto: str, where: tuple[str, str | int], handler: Handler, implicit: bool) -> None:
        try:
            sock = bind_listener(where, self.settings.socket_mode, self.settings.socket_group)
        except OSError as exc:
            raise ServeError(f"{proto}: cannot listen on {where[0]}:{where[1]}: {exc.strerror or exc}") from None
        if where[0] == "unix":
            self.unix_paths.append(Path(str(where[1])))
            log.info("%s listening on unix:%s", proto, where[1])
        else:
            host, port = where
            log.info("%s listening on %s:%s", proto, host, port)
            if proto in ("lmtp", "lookup") and not _is_loopback((host, port)):
                log.warning("%s listens on %s, beyond loopback: anyone who reaches it can %s", proto, host,
                            "deliver mail unchecked" if proto == "lmtp" else "probe which users exist")
        # accepted here, counted against the caps, then served (no handshake before the count)
        self.servers.append(Listener(proto, sock, self.caps,
                                     lambda p, conn: self.serve_accepted(p, conn, handler, implicit)))

    async def housekeeping(self) -> None:
        while not self.stopping.is_set():
            try:
                await asyncio.wait_for(self.stopping.wait(), 3600)
            except asyncio.TimeoutError:
                pass
            if self.stopping.is_set():
                return
            for box in self.store.open_mailboxes():
                try:
                    await asyncio.to_thread(box.prune_deliveries)
                except Exception:
                    log.exception("pruning delivery records of %s failed", box.user)

    async def stop(self, grace: float = GRACE_SECONDS) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed() if not self.sessions else None
        if self.sessions:
            _done, pending = await asyncio.wait(set(self.sessions), timeout=grace) if grace > 0 \
                else (set(), set(self.sessions))
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=GRACE_SECONDS)
        for path in self.unix_paths:
            try:
                path.unlink()
            except OSError:
                pass
        await asyncio.to_thread(self.store.close)


# Imported before dropping root, in case the Python installation is not readable by run_as.
PRELOAD = ("concurrent.futures.thread", *daemon.MAIL_MODULES,
           "mailsift.store.maildir", "mailsift.store.index", "mailsift.serve.socketmap")
# ... and what the feedback learner (on_start) imports when it first learns.
LEARNER_PRELOAD = ("mailsift.classifier.learn", "mailsift.classifier.persist", "mailsift.classifier.record",
                   "joblib", "sklearn.naive_bayes", "scipy.sparse",
                   # [classifier] share (mailsift/share/agent.py's PRELOAD)
                   "mailsift.share.agent", "mailsift.share.channel", "mailsift.share.outbox",
                   "mailsift.share.snapshot", "mailsift.resp", "subprocess")


def drop_privileges(settings: StoreSettings, heavy: tuple[str, ...] = ()) -> None:
    """Become settings.run_as (after the listeners are bound); `heavy`: see daemon.drop_privileges.
    Raises ServeError."""
    import pwd

    try:
        pw = pwd.getpwnam(settings.run_as)
    except KeyError:
        raise ServeError(f"run_as: no user {settings.run_as!r}") from None
    if os.geteuid() == 0 and os.geteuid() != pw.pw_uid:
        root = settings.mail_root
        st = os.lstat(root)
        if st.st_uid == 0 and stat.S_ISDIR(st.st_mode) and not any(os.scandir(root)):
            os.lchown(root, pw.pw_uid, pw.pw_gid)  # a fresh mail root goes to the server's user
    try:
        daemon.drop_privileges(settings.run_as, preload=PRELOAD, heavy=heavy)
    except (daemon.DaemonError, OSError) as exc:
        raise ServeError(f"run_as: {exc}") from None
    if not os.access(settings.mail_root, os.W_OK | os.X_OK):
        raise ServeError(f"mail_root {settings.mail_root} is not writable by {settings.run_as}: "
                         f"chown -R {settings.run_as} {settings.mail_root}")
    if os.path.exists(settings.users) and not os.access(settings.users, os.R_OK):
        raise ServeError(f"the user database {settings.users} is not readable by {settings.run_as}: "
                         f"chgrp {settings.run_as} {settings.users} && chmod 0640 {settings.users}")


async def serve(settings: StoreSettings, ready: Callable[[], None] | None = None,
                on_start: Callable[[Store], Any] | None = None) -> int:
    """Run until SIGTERM. `on_start(store)` is called once the listeners serve (e.g. to start the
    feedback learner); whatever it returns is stop()ped before the store closes."""
    nofile = raise_nofile()  # before anything is opened; the IMAP workers inherit it
    server = Server(settings)
    log.info("file descriptor limit %d: up to %d POP3/IMAP, %d LMTP, %d lookup connections, %d idle mailboxes "
             "open", nofile, server.caps.limits["clients"], server.caps.limits["lmtp"],
             server.caps.limits["lookup"], server.store.max_open)
    nworkers = worker_count(settings)
    if nworkers > 0:
        server.handoff_protocols = WORKER_PROTOCOLS
    loop = asyncio.get_running_loop()
    # Store calls wait on fsync far more than they compute: more threads than cores pays.
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(max_workers=WORKER_THREADS,
                                                                    thread_name_prefix="store"))
    daemon.stop_on_signals(loop, server.stopping.set)
    pool: WorkerPool | None = None
    try:
        await server.start()
        if server.handoff:
            # Started before dropping privileges: each worker reads the TLS key, then drops them.
            pool = WorkerPool(settings, server.store, server.handoff, nworkers, gate=server.throttle,
                              caps=server.caps)
            await pool.start()
        if settings.run_as:
            drop_privileges(settings, LEARNER_PRELOAD if on_start is not None else ())
    except ServeError:
        if pool is not None:
            await pool.stop(0)
        await server.stop()
        raise
    if not server.servers and pool is None:
        log.error("no listener is configured")
        await server.stop()
        return 3
    for listener in server.servers:  # only now: sessions never run with the starting user's rights
        await listener.start_serving()
    log.info("mailsift serve ready (%d listeners%s)", len(server.servers) + len(server.handoff),
             f", IMAP in {nworkers} worker processes" if pool is not None else "")
    if ready:
        ready()
    keeper = asyncio.create_task(server.housekeeping())
    helper = None
    if on_start is not None:
        try:
            helper = await asyncio.to_thread(on_start, server.store)
        except Exception:
            log.exception("starting a helper failed; serving mail without it")
    await server.stopping.wait()
    log.info("stopping")
    keeper.cancel()
    for listener in server.servers:
        listener.close()
    if pool is not None:
        await pool.stop(GRACE_SECONDS)
    if helper is not None and hasattr(helper, "stop"):
        try:
            await asyncio.to_thread(helper.stop)
        except Exception:
            log.exception("stopping a helper failed")
    await server.stop()
    return 0
