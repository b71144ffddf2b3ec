"""An IMAP worker process of `mailsift serve` (serve/workers.py describes them): started by the
main process as `python -m mailsift.serve.workers_main`, it serves the connections handed to it
with the main process's Server code. Kept apart from workers.py, which the server imports, so the
two do not import each other."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys

from mailsift import aioloop, daemon
from mailsift.ops import metrics
from mailsift.serve.server import IMPLICIT_TLS, PROTOCOLS, Server, drop_privileges, load_handler
from mailsift.store.settings import StoreSettings
from mailsift.serve.workers import SETTINGS_ENV, WORKER_PROTOCOLS, WorkerLink

log = logging.getLogger("mailsift.serve.workers")


def _settings_from_env() -> StoreSettings:
    raw = json.loads(os.environ[SETTINGS_ENV])
    names = {f.name for f in dataclasses.fields(StoreSettings)}
    return StoreSettings(**{k: v for k, v in raw.items() if k in names})


def _die_with_parent() -> None:
    """Linux: SIGTERM when the main process dies (even by SIGKILL), besides the link closing."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


async def worker_serve(settings: StoreSettings, link_fd: int, conns_fd: int, index: int) -> int:
    server = Server(settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    daemon.stop_on_signals(loop, stop.set)
    if settings.run_as:
        drop_privileges(settings)
    link_sock = socket.socket(fileno=link_fd)
    reader, writer = await asyncio.open_unix_connection(sock=link_sock)
    link = WorkerLink(reader, writer, server.store)
    metrics.forward_to(lambda event: link._write(("metric", event)))
    server.shared["imap.limiter"] = link
    server.throttle = link.gate  # logins through the main process's gate
    handlers = {}
    for proto in WORKER_PROTOCOLS:
        handler = load_handler(PROTOCOLS[proto])
        if handler is None:
            log.error("%s: no handler", proto)
            return 3
        handlers[proto] = handler
    conns = socket.socket(fileno=conns_fd)
    conns.setblocking(False)
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(proto: str, conn: socket.socket, cid: int) -> None:
        try:
            await server.serve_accepted(proto, conn, handlers[proto], proto in IMPLICIT_TLS)
        finally:
            link.closed(cid)

    def on_conns() -> None:
        for _ in range(64):
            try:
                msg, fds, _flags, _addr = socket.recv_fds(conns, 64, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg, fds = b"", []
            if not msg and not fds:  # the main process is gone
                loop.remove_reader(conns.fileno())
                stop.set()
                return
            proto, _, cid_text = msg.decode("ascii", "replace").partition(" ")
            cid = int(cid_text) if cid_text.isdigit() else 0
            for fd in fds:
                conn = socket.socket(fileno=fd)
                if proto not in handlers:
                    conn.close()
                    link.closed(cid)
                    continue
                task = loop.create_task(serve_one(proto, conn, cid))
                tasks.add(task)
                task.add_done_callback(tasks.discard)

    loop.add_reader(conns.fileno(), on_conns)
    link.ready()
    log.debug("imap worker %d ready (pid %d)", index, os.getpid())
    link_task = asyncio.create_task(link.run())
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({link_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    try:
        loop.remove_reader(conns.fileno())
    except (ValueError, OSError):
        pass
    if stop_task.done() and not link_task.done():
        await server.stop()  # gives open sessions the grace period
        await link.drain()   # the events it still holds: the learner in the main process wants them
    else:
        await server.stop(grace=0.0)
    link_task.cancel()
    stop_task.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mailsift-imap-worker", description="an IMAP worker of mailsift serve")
    ap.add_argument("--index", type=int, default=0)
    ap.add_argument("--link", type=int, required=True)
    ap.add_argument("--conns", type=int, required=True, help="accepted connections arrive here (SCM_RIGHTS)")
    ap.add_argument("--log-level", default="INFO")
    ap.add_argument("--tls-fds", help="CERT,KEY: memory files holding the TLS certificate and key")
    args = ap.parse_args(argv)
    _die_with_parent()
    from mailsift.logsetup import setup_logging
    setup_logging(args.log_level)
    if os.getppid() == 1:
        return 0  # the main process died before we started
    try:
        settings = _settings_from_env()
        if args.tls_fds:  # opened again through /proc: a fresh description, read from the start
            cert, key = args.tls_fds.split(",")
            settings = dataclasses.replace(settings, tls_cert=f"/proc/self/fd/{int(cert)}",
                                           tls_key=f"/proc/self/fd/{int(key)}")
        return aioloop.run(worker_serve(settings, args.link, args.conns, args.index))
    except Exception:
        log.exception("imap worker %d failed", args.index)
        return 1


if __name__ == "__main__":
    sys.exit(main())
