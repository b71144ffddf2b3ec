"""IMAP worker processes: `mailsift serve` answers IMAP in N processes beside the main one.

One Python process runs one thread of Python at a time (the GIL); with 20 busy IMAP clients
the serve process was CPU-bound on one core (docs/imap.md). With `[store] imap_workers` > 0 the
main process binds the imap/imaps listeners as before, accepts their connections and hands
each one (SCM_RIGHTS over a socketpair) to the ready worker with the fewest open connections;
the workers are started as `python -P -m mailsift.serve.workers_main` (-P: with the main
process's import path, without the current directory). (Workers accepting on a shared
socket, or on SO_REUSEPORT sockets, split a burst of 20 connections 20/0, 19/1 or 15/5:
measured; one worker saturated while the other idled.) LMTP, POP3, the Postfix lookup and the
feedback learner stay in the main process.

What crosses processes, and how it stays correct:
- the index and the files: every user's operations are serialised host-wide by the mailbox
  lock (locks.py); listing caches are stamp-checked against the index; the header cache is
  keyed by UIDVALIDITY and UID, which never name other bytes.
- \\Recent: claimed atomically in the index (Mailbox.claim_recent).
- store change events: each process publishes its own events locally and sends them to the
  main process (the hub), which publishes them on its own bus (so the feedback learner sees
  every change exactly once, whoever made it) and passes them on to the workers with sessions
  of that user (they publish them with publish_remote, never forwarding them again). IDLE and
  the other sessions' untagged responses work from those events as before. A worker sends the
  events of a user with sessions in another worker too, and those the learner learns from
  (rules.action_for: a move into or out of Junk), at the end of its loop turn; the others (only
  the implicit feedback tracker wants them) it gathers for EVENT_DELAY first, and sends what it
  holds when it stops; one that dies loses them (perf: a message per loop turn woke the main
  process hundreds of times a second). The main process tells each worker which of its users
  are shared ("shared").
- connection caps (per user, per address): a worker asks the hub before admitting a session
  (`acquire`) and tells it when the session ends (`release`); a dead worker's sessions are
  released with it.
- logins: the main process holds the one login gate (the failed-login throttle and the auth
  cache, store/authgate.py); a worker's sessions ask it over the link (`auth.*` messages, a
  RemoteGate), and a dead worker's attempts are counted as failures and their turns freed.

The link is a socketpair carrying length-prefixed pickles between our own processes (events,
as tuples of their fields, interest, caps, "ready", "closed"); a worker writes what one turn
of its event loop has to send at once. Connections come over a second one. A worker exits when
the main process is gone (the link closes; PR_SET_PDEATHSIG too); the main process starts a
worker again when one dies, and stops them (SIGTERM, then SIGKILL after the grace period) when
it stops. Connections wait in the listen backlog while no worker is ready.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import itertools
import json
import logging
import operator
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailsift import daemon
from mailsift.store.authgate import GateServer, RemoteGate
from mailsift.serve.conncaps import cap_address, refuse
from mailsift.feedback.rules import action_for
from mailsift.ops import metrics
from mailsift.store.events import Event
from mailsift.store.settings import StoreSettings

log = logging.getLogger("mailsift.serve.workers")

WORKER_PROTOCOLS = ("imap", "imaps")
MAX_AUTO_WORKERS = 8
RESPAWN_DELAY = 1.0
# A worker gathers the events no other worker waits for this long (seconds) before sending them.
EVENT_DELAY = 0.05
SETTINGS_ENV = "MAILSIFT_WORKER_SETTINGS"
BIND_RETRY_SECONDS = 3.0
_FRAME = struct.Struct("!I")


def worker_count(settings: StoreSettings) -> int:
    """How many IMAP worker processes: the setting, or one per CPU (-1; none on one CPU)."""
    n = settings.imap_workers
    if n >= 0:
        return n
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(cpus, MAX_AUTO_WORKERS) if cpus > 1 else 0


def frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _FRAME.pack(len(data)) + data


# Events cross the link as plain tuples of their fields, in Event's field order (perf: a tuple
# of str, int and frozenset pickles in less than half the time and a third of the bytes of the
# dataclass, which names its class and every field).
_EVENT_FIELDS = tuple(f.name for f in dataclasses.fields(Event))
_event_tuple = operator.attrgetter(*_EVENT_FIELDS)


def encode_events(events: list[Event]) -> list[tuple[Any, ...]]:
    return [_event_tuple(ev) for ev in events]


def decode_events(rows: list[tuple[Any, ...]]) -> list[Event]:
    """The events again, equal to those encoded (perf: filling each instance's __dict__ skips the
    frozen dataclass's __init__, which sets every field through object.__setattr__: a third of
    the time. Event has no __post_init__ and no __slots__; tests/store/test_worker_link.py checks)."""
    out = []
    for row in rows:
        ev = _new_event(Event)
        ev.__dict__.update(zip(_EVENT_FIELDS, row))
        out.append(ev)
    return out


_new_event = object.__new__


async def read_frames(reader: asyncio.StreamReader, chunk: int = 1 << 18) -> AsyncIterator[Any]:
    """The messages of a link in order, until it closes: each read takes every whole frame that
    has arrived (perf: one await per batch of frames instead of two per frame). A link closed in
    the middle of a frame raises IncompleteReadError."""
    buf = bytearray()
    while True:
        data = await reader.read(chunk)
        if not data:
            if buf:
                raise asyncio.IncompleteReadError(bytes(buf), None)
            return
        buf += data
        pos, size = 0, len(buf)
        while size - pos >= _FRAME.size:
            (n,) = _FRAME.unpack_from(buf, pos)
            end = pos + _FRAME.size + n
            if end > size:
                break
            msg = pickle.loads(buf[pos + _FRAME.size:end])
            pos = end
            yield msg
        del buf[:pos]


def bind_listener(where: tuple[str, str | int], socket_mode: str,
                  socket_group: str | None = daemon.SOCKET_GROUP) -> socket.socket:
    """A listening socket whose connections the main process hands to the workers (TCP, or a
    unix socket path)."""
    if where[0] == "unix":
        return daemon.bind(daemon.Listen("unix", path=str(where[1])), socket_mode, socket_group, backlog=511)
    host, port = str(where[0]), int(where[1])
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        try:
            return socket.create_server((host, port), family=family, backlog=511)
        except OSError as exc:
            # the workers of a server killed just now close their copy of the socket within
            # moments (PR_SET_PDEATHSIG, then the closed link): wait for them, not longer
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- the main process's side -------------------------------------------------------------------

@dataclass
class _Worker:
    index: int
    proc: asyncio.subprocess.Process | None = None
    writer: asyncio.StreamWriter | None = None
    interest: dict[str, int] = field(default_factory=dict)          # user -> subscriptions
    shared: set[str] = field(default_factory=set)  # users it was told another worker has sessions of
    held: dict[tuple[str, str], int] = field(default_factory=dict)  # (kind, key) -> sessions
    conns: socket.socket | None = None   # accepted connections go over this (SCM_RIGHTS)
    ready: bool = False                  # the worker said it serves
    # connections handed to it and not yet closed: id -> (listener, address for the caps)
    handed: dict[int, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def live(self) -> int:
        return len(self.handed)


class WorkerPool:
    """Starts, feeds and supervises the IMAP workers (run in the main process's loop)."""

    def __init__(self, settings: StoreSettings, store: Any, listeners: dict[str, socket.socket], count: int,
                 log_level: int | None = None, gate: Any = None, caps: Any = None) -> None:
        self.settings = settings
        self.gate = GateServer(gate) if gate is not None else None
        self.caps = caps  # conncaps.ConnectionCaps of the main process (None: no caps)
        self._cids = itertools.count(1)
        self.store = store
        self.listeners = listeners
        self.count = count
        self.log_level = log_level if log_level is not None else logging.getLogger().getEffectiveLevel()
        self.workers: list[_Worker] = [_Worker(i) for i in range(count)]
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # The certificate and key are read once, here, before run_as drops root: a worker started
        # later (to replace one that died) would run as run_as and could not read a root-only
        # key, and every worker serves what the main process read at its start even if the files
        # changed since. Each worker gets them in memory files (_tls_fds).
        self.tls_pem: tuple[bytes, bytes] | None = None
        if settings.tls_cert and settings.tls_key:
            try:
                self.tls_pem = (Path(settings.tls_cert).read_bytes(), Path(settings.tls_key).read_bytes())
            except OSError as exc:
                log.warning("cannot read the TLS certificate or key for the imap workers: %s", exc)

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.store.events.forward = self._forward_own
        for sock in self.listeners.values():
            sock.setblocking(False)
        for w in self.workers:
            await self._spawn(w)

    # -- connections: accepted here, handed to the least busy worker ---------------------------
    def _accepting(self, on: bool) -> None:
        assert self.loop is not None
        for proto, sock in self.listeners.items():
            if on:
                self.loop.add_reader(sock.fileno(), self._accept, proto, sock)
            else:
                self.loop.remove_reader(sock.fileno())

    def _accept(self, proto: str, sock: socket.socket) -> None:
        for _ in range(64):
            ready = [w for w in self.workers if w.ready and w.conns is not None]
            if not ready:
                self._accepting(False)  # until a worker says it is ready (the backlog holds them)
                return
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: leave it in the backlog a moment
                log.warning("imap accept failed: %s", exc)
                return
            address = cap_address(_addr if isinstance(_addr, tuple) else None)
            why = self.caps.admit(proto, address) if self.caps is not None else None
            if why is not None:
                log.warning("%s: refused a connection from %s: %s", proto, address or "a local peer", why)
                refuse(proto, conn)
                continue
            w = min(ready, key=lambda x: x.live)
            cid = next(self._cids)
            try:
                socket.send_fds(w.conns, [f"{proto} {cid}".encode()], [conn.fileno()])
                w.handed[cid] = (proto, address)
            except OSError as exc:
                log.warning("handing a connection to imap worker %d failed: %s", w.index, exc)
                if self.caps is not None:
                    self.caps.release(proto, address)
            finally:
                conn.close()

    def _release(self, w: _Worker, cids: list[int]) -> None:
        for cid in cids:
            held = w.handed.pop(cid, None)
            if held is not None and self.caps is not None:
                self.caps.release(*held)

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers if w.proc is not None and w.proc.returncode is None]

    def _tls_fds(self) -> list[int]:
        """Memory files holding the certificate and the key for one worker (none without TLS)."""
        if self.tls_pem is None:
            return []
        fds: list[int] = []
        for name, data in zip(("cert", "key"), self.tls_pem):
            fd = os.memfd_create(f"mailsift-tls-{name}", 0)
            fds.append(fd)
            view, done = memoryview(data), 0
            while done < len(view):
                done += os.write(fd, view[done:])
        return fds

    async def _spawn(self, w: _Worker) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        conns_parent, conns_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        fds = [child.fileno(), conns_child.fileno()]
        # -P: the worker imports mailsift from where the main process did, never from a
        # `mailsift` directory in the current one (`-m` would put that first on sys.path)
        argv = [sys.executable, "-P", "-m", "mailsift.serve.workers_main", "--index", str(w.index),
                "--link", str(child.fileno()), "--conns", str(conns_child.fileno()),
                "--log-level", logging.getLevelName(self.log_level)]
        tls_fds = self._tls_fds()
        if tls_fds:
            fds += tls_fds
            argv += ["--tls-fds", ",".join(map(str, tls_fds))]
        env = dict(os.environ)
        env[SETTINGS_ENV] = json.dumps(dataclasses.asdict(self.settings))
        try:
            w.proc = await asyncio.create_subprocess_exec(*argv, pass_fds=fds, stdin=asyncio.subprocess.DEVNULL,
                                                          env=env)
        except BaseException:
            conns_parent.close()
            raise
        finally:
            child.close()
            conns_child.close()
            for fd in tls_fds:
                os.close(fd)
        conns_parent.setblocking(False)
        w.conns = conns_parent
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        w.writer = writer
        if self.gate is not None:
            self.gate.hello(lambda m: self._send(w, m))
        self._forget_interest(w)
        w.held.clear()
        w.ready = False
        self._release(w, list(w.handed))
        log.info("imap worker %d started (pid %d)", w.index, w.proc.pid)
        task = asyncio.create_task(self._serve(w, reader))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, w: _Worker, reader: asyncio.StreamReader) -> None:
        try:
            async for msg in read_frames(reader):
                self._handle(w, msg)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except Exception:
            log.exception("imap worker %d: bad message on its link", w.index)
        finally:
            if w.writer is not None:
                if self.gate is not None:
                    self.gate.forget(w.writer)
                w.writer.close()
                w.writer = None
            if w.conns is not None:
                w.conns.close()
                w.conns = None
            w.ready = False
            self._release(w, list(w.handed))  # its sessions are gone with it
            self._forget_interest(w)
            w.held.clear()
        proc = w.proc
        if proc is not None:
            if not self.stopping:
                try:
                    await asyncio.wait_for(proc.wait(), 5)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            else:
                await proc.wait()
        if not self.stopping:
            log.error("imap worker %d (pid %s) ended with status %s; starting it again", w.index,
                      proc.pid if proc else "?", proc.returncode if proc else "?")
            await self._respawn(w)

    async def _respawn(self, w: _Worker) -> None:
        """Start worker w again, retrying while it cannot be started (a missing or unreadable
        interpreter after run_as, no memory, too many processes) instead of giving it up."""
        delay = RESPAWN_DELAY
        while not self.stopping:
            await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                await self._spawn(w)
                return
            except Exception as exc:  # noqa: BLE001 - logged; the slot must not be lost
                log.error("cannot start imap worker %d again: %s; retrying in %.0f s", w.index, exc, delay)
                delay = min(delay * 2, 60.0)

    def _handle(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "closed":
            self._release(w, [int(cid) for cid in msg[1:]])
            log.debug("imap worker %d: a connection closed (%d open)", w.index, w.live)
        elif kind == "ready":
            was_any = any(x.ready for x in self.workers)
            w.ready = True
            if not was_any and not self.stopping:
                self._accepting(True)
        elif kind == "events":
            rows: list[tuple[Any, ...]] = msg[1]
            events = decode_events(rows)
            self.store.events.publish_remote(events)  # the learner and the main process's sessions
            self._fanout(events, origin=w, rows=rows)
        elif kind == "metric":
            metrics.remote(msg[1])
        elif kind == "want":
            user, delta = msg[1], msg[2]
            n = w.interest.get(user, 0) + delta
            if n > 0:
                w.interest[user] = n
            else:
                w.interest.pop(user, None)
            if (n > 0) != (n - delta > 0):
                self._update_shared(user)
        elif kind == "acquire":
            _kind, rid, what, key, cap = msg
            held = sum(x.held.get((what, key), 0) for x in self.workers)
            ok = held < cap
            if ok:
                w.held[(what, key)] = w.held.get((what, key), 0) + 1
            self._send(w, ("grant", rid, ok))
        elif kind == "release":
            what, key = msg[1], msg[2]
            n = w.held.get((what, key), 0) - 1
            if n > 0:
                w.held[(what, key)] = n
            else:
                w.held.pop((what, key), None)
        elif kind.startswith("auth.") and self.gate is not None and w.writer is not None:
            writer = w.writer  # the owner: replies never reach a later worker in this slot
            self.gate.handle(writer, msg, lambda m: writer.is_closing() or writer.write(frame(m)))
        else:
            log.warning("imap worker %d sent %r", w.index, kind)

    def _update_shared(self, user: str) -> None:
        """Tell the workers with sessions of `user` whether another worker has some too (then
        they send its events at once)."""
        shared = sum(user in x.interest for x in self.workers) > 1
        for x in self.workers:
            want = shared and user in x.interest
            if want != (user in x.shared):
                if want:
                    x.shared.add(user)
                else:
                    x.shared.discard(user)
                self._send(x, ("shared", user, want))

    def _forget_interest(self, w: _Worker) -> None:
        """Worker w's sessions are gone (it died, or starts afresh)."""
        users = list(w.interest)
        w.interest.clear()
        w.shared.clear()
        for user in users:
            self._update_shared(user)

    def _send(self, w: _Worker, msg: Any) -> None:
        if w.writer is not None and not w.writer.is_closing():
            w.writer.write(frame(msg))

    def _fanout(self, events: list[Event], origin: _Worker | None, rows: list[tuple[Any, ...]] | None = None) -> None:
        """`rows`: the events encoded already (encode_events), as a worker sent them."""
        for w in self.workers:
            if w is origin or not w.interest:
                continue
            if rows is None:
                rows = encode_events(events)
            mine = [row for ev, row in zip(events, rows) if ev.user in w.interest]
            if mine:
                self._send(w, ("events", mine))

    def _forward_own(self, events: list[Event]) -> None:
        """The main process's own changes (LMTP deliveries, POP3 deletions): called in the
        thread that made them."""
        loop = self.loop
        if loop is None or self.stopping:
            return
        try:
            loop.call_soon_threadsafe(self._fanout, events, None)
        except RuntimeError:  # loop closed
            pass

    async def stop(self, grace: float) -> None:
        self.stopping = True
        self.store.events.forward = None
        if self.loop is not None:
            self._accepting(False)
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if procs:
            _done, _pending = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace + 2)
            for p in procs:
                if p.returncode is None:
                    log.warning("imap worker pid %d did not stop; killing it", p.pid)
                    p.kill()
            for p in procs:
                await p.wait()
        for t in list(self.tasks):
            t.cancel()
        for sock in self.listeners.values():
            sock.close()


# -- the worker's side -----------------------------------------------------------------------

class WorkerLink:
    """A worker's end of the link: sends its events, subscription interest and cap requests.

    What one turn of the event loop sends goes out in one write, and the events the store
    threads publish meanwhile in one message (perf: a write to the link is a system call here
    and a wake-up of the main process there; the session mix made one per store change). Events
    of users no other worker has sessions of wait EVENT_DELAY for more to join them; any of a
    shared user's sends them all at the end of the loop turn, and drain() when the worker stops."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, store: Any) -> None:
        self.reader, self.writer = reader, writer
        self.store = store
        self.loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._rids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[bool]] = {}
        self._out: list[bytes] = []                # frames for the next write (loop thread)
        self._events: list[Event] = []             # published by store threads, not yet sent
        self._events_lock = threading.Lock()
        self._events_due = ""                      # a _send_events is scheduled: "soon", "later"
        self._shared: set[str] = set()             # users with sessions in another worker too
        self.gate = RemoteGate(self._write)
        store.events.forward = self._forward
        store.events.interest = self._interest

    def _write(self, msg: Any) -> None:
        if threading.get_ident() != self._loop_thread:
            try:
                self.loop.call_soon_threadsafe(self._write, msg)
            except RuntimeError:  # the loop is closed: the worker is stopping
                pass
            return
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(frame(msg))

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and not self.writer.is_closing():
            self.writer.write(b"".join(out))

    def _forward(self, events: list[Event]) -> None:  # store threads, and the loop's
        # urgent: another worker's sessions wait for them, or the learner learns from them at once
        # (a move into or out of Junk: never held, so a worker that dies keeps none of them)
        urgent = any(ev.user in self._shared or action_for(ev) is not None for ev in events)
        with self._events_lock:
            self._events += events
            if self._events_due == "soon" or (self._events_due == "later" and not urgent):
                return
            self._events_due = "soon" if urgent else "later"
        try:
            if threading.get_ident() == self._loop_thread:
                if urgent:
                    self.loop.call_soon(self._send_events)
                else:
                    self.loop.call_later(EVENT_DELAY, self._send_events)
            elif urgent:
                self.loop.call_soon_threadsafe(self._send_events)
            else:
                self.loop.call_soon_threadsafe(self.loop.call_later, EVENT_DELAY, self._send_events)
        except RuntimeError:
            pass

    def _send_events(self) -> None:
        """Send what is held (a timer set for events sent earlier finds nothing, or sends early)."""
        with self._events_lock:
            events, self._events = self._events, []
            self._events_due = ""
        if events:
            self._write(("events", encode_events(events)))

    async def drain(self) -> None:
        """Send the events held and everything written, now (the worker stops)."""
        self._send_events()
        self._flush()
        try:
            await asyncio.wait_for(self.writer.drain(), 5)
        except (ConnectionError, TimeoutError):
            pass

    def _interest(self, user: str, delta: int) -> None:  # any thread
        try:
            self.loop.call_soon_threadsafe(self._write, ("want", user, delta))
        except RuntimeError:
            pass

    async def acquire(self, what: str, key: str, cap: int) -> bool:
        """A session slot (what = "user" or "address") if fewer than `cap` are held host-wide."""
        rid = next(self._rids)
        fut: asyncio.Future[bool] = self.loop.create_future()
        self._waiting[rid] = fut
        self._write(("acquire", rid, what, key, cap))
        try:
            return await asyncio.wait_for(fut, 10)
        finally:
            self._waiting.pop(rid, None)

    def release(self, what: str, key: str) -> None:
        self._write(("release", what, key))

    def closed(self, cid: int) -> None:
        """The connection the main process handed us as `cid` has ended."""
        self._write(("closed", cid))

    def ready(self) -> None:
        self._write(("ready",))

    async def run(self) -> None:
        """Until the main process goes away."""
        try:
            async for msg in read_frames(self.reader):
                if msg[0] == "events":
                    self.store.events.publish_remote(decode_events(msg[1]))
                elif msg[0] == "shared":
                    if msg[2]:
                        self._shared.add(msg[1])
                    else:
                        self._shared.discard(msg[1])
                elif str(msg[0]).startswith("auth."):
                    self.gate.received(msg)
                elif msg[0] == "grant":
                    fut = self._waiting.get(msg[1])
                    if fut is not None and not fut.done():
                        fut.set_result(bool(msg[2]))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        log.info("the main process is gone; this imap worker stops")
