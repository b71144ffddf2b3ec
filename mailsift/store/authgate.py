"""The login gate: one failed-login throttle and one auth cache for every process of `mailsift serve`.

The main process holds the one `LoginGate`; its own sessions (POP3, and IMAP without worker
processes) call it directly, the IMAP workers through `RemoteGate`, which sends the same calls
over their link to the main process (`GateServer` answers them there; serve/workers.py carries
the messages). So POP3 and every IMAP worker count failures in one place and share one cache.

Throttle (`LoginThrottle` keeps the failures, `LoginGate.enter` applies them):
- keys: the canonical user name (`Users.canonical`: " Demo@Example.Test. " and
  "demo@example.test" are one key) and the client's address, an IPv6 address by its /64
  (one host usually holds a whole /64); names that are not valid addresses keep their own key.
- after `free_failures` failures of a key, attempts on that key take turns: each waits for
  the attempt before it to finish, then waits its own delay (1, 2, 4 ... up to 15 s), then
  its password is checked. Attempts still being checked count as failures for the user key,
  so N parallel guesses get no more than one check per delay. At most `MAX_QUEUE` attempts
  wait on one key; more are refused (after the longest delay, with no password check).
- an attempt holds its turn from `enter` until `leave` (or `LEASE` seconds, or the end of the
  worker that holds it): the gate never stays closed for a process that died.

Cache (`AuthCache`): after a correct password the gate remembers, per canonical user, the tag
HMAC-SHA256(key, user NUL stored-hash NUL password) until `ttl` seconds have passed (LRU,
`size` users; 0 = off). A later login whose tag matches is correct without scrypt. The key is
32 random bytes made when the main process starts, kept in memory only and handed to the
workers over their link: the cache holds no password, nothing that logs in, and nothing that
can be guessed against without the key. The tag covers the stored hash, so a password change
or `user del` (a new hash, or none) leaves no entry that can match, at once and in every
process. A wrong password never matches and costs the full hash like any miss; failures are
never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import itertools
import logging
import secrets
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("mailsift.auth")

MAX_KEY = 320


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 3          # failures (per address or user) tolerated without delay
    base_delay: float = 1.0         # seconds for the first delayed attempt, doubling after
    max_delay: float = 15.0
    window: float = 900.0           # seconds a failure is remembered
    max_address_failures: int = 50  # beyond this an address is refused until failures age out

    def delay(self, failures: int) -> float:
        n = failures - self.free_failures
        if n <= 0:
            return 0.0
        return min(self.max_delay, self.base_delay * (2.0 ** min(n - 1, 30)))


def address_key(address: str) -> str:
    """The throttle's key for a client address: IPv4 as is, IPv6 by its /64 (an IPv4-mapped one
    as the IPv4 address), anything else (a unix socket) as given."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:MAX_KEY]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def user_key(users: Any, name: str) -> str:
    """The throttle's and the cache's key for a login name: the canonical user, or for a name no
    user can have, the name itself (stripped, lower-cased, bounded) behind a '?'."""
    try:
        return str(users.canonical(name))
    except (AttributeError, ValueError, TypeError):
        return "?" + str(name).strip().lower()[:MAX_KEY]


def cache_tag(key: bytes, user: str, stored_hash: str, password: str) -> bytes:
    msg = b"\0".join((user.encode("utf-8", "surrogateescape"), stored_hash.encode("ascii", "replace"),
                      password.encode("utf-8", "surrogateescape")))
    return hmac.new(key, msg, hashlib.sha256).digest()


class LoginThrottle:
    """Failed logins per address key and per user key in a sliding window (thread-safe, bounded)."""

    MAX_KEYS = 100_000

    def __init__(self, policy: ThrottlePolicy | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy or ThrottlePolicy()
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _count(self, key: str, now: float) -> int:
        q = self._failures.get(key)
        if not q:
            return 0
        horizon = now - self.policy.window
        while q and q[0] < horizon:
            q.popleft()
        if not q:
            del self._failures[key]
            return 0
        return len(q)

    def failures(self, address: str, user: str) -> tuple[int, int]:
        now = self._clock()
        with self._lock:
            return self._count("a:" + address, now), self._count("u:" + user.lower(), now)

    def delay(self, address: str, user: str) -> float:
        """Seconds to wait before checking this attempt."""
        return self.policy.delay(max(self.failures(address, user)))

    def refused(self, address: str) -> bool:
        """True when this address has failed so often that no password is checked."""
        by_addr, _ = self.failures(address, "")
        return by_addr >= self.policy.max_address_failures

    def failure(self, address: str, user: str | None) -> None:
        """A failed attempt (user None: counted for the address only)."""
        now = self._clock()
        keys = ["a:" + address] + ([] if user is None else ["u:" + user.lower()])
        with self._lock:
            if len(self._failures) >= self.MAX_KEYS:
                self._prune(now)
            for key in keys:
                q = self._failures.setdefault(key, deque(maxlen=max(self.policy.max_address_failures, 64)))
                q.append(now)

    def success(self, address: str, user: str) -> None:
        """A good login forgets the user's failures (not the address's)."""
        with self._lock:
            self._failures.pop("u:" + user.lower(), None)

    def _prune(self, now: float) -> None:
        for key in list(self._failures):
            self._count(key, now)
        while len(self._failures) >= self.MAX_KEYS:  # still full: drop the oldest entries
            self._failures.pop(next(iter(self._failures)))


class AuthCache:
    """Canonical user -> (tag, expiry) of the last correct login; LRU, `size` users (0 = off)."""

    def __init__(self, size: int = 10_000, ttl: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = max(0, size)
        self.ttl = ttl
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[tuple[str, bytes]]:
        return [(user, tag) for user, (tag, _exp) in self._entries.items()]

    def match(self, user: str, tag: bytes) -> bool:
        entry = self._entries.get(user)
        if entry is None:
            return False
        if entry[1] <= self._clock():
            del self._entries[user]
            return False
        if not hmac.compare_digest(entry[0], tag):
            return False
        self._entries.move_to_end(user)
        return True

    def put(self, user: str, tag: bytes) -> None:
        if self.size <= 0:
            return
        self._entries[user] = (tag, self._clock() + self.ttl)
        self._entries.move_to_end(user)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def drop(self, user: str) -> None:
        self._entries.pop(user, None)


@dataclass(eq=False)
class Ticket:
    """One login attempt let through the gate (`refused`: check no password, it fails)."""
    id: int
    address: str
    user: str
    refused: bool = False
    overflow: bool = False          # refused because too many attempts waited on a key
    keys: list[str] = field(default_factory=list)      # the keys whose turn it waits for or holds
    lanes: list[asyncio.Lock] = field(default_factory=list)
    owner: Any = None
    expiry: asyncio.TimerHandle | None = None
    done: bool = False


class LoginGate:
    """The throttle and the cache of one `mailsift serve` (lives in its main process's loop)."""

    MAX_QUEUE = 8      # attempts waiting for their turn on one key; more are refused
    LEASE = 60.0       # seconds an attempt may hold its turn before the gate takes it back

    def __init__(self, policy: ThrottlePolicy | None = None, cache_size: int = 10_000,
                 cache_ttl: float = 3600.0, clock: Callable[[], float] = time.monotonic,
                 throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle or LoginThrottle(policy, clock)
        self.policy = self.throttle.policy
        self.cache = AuthCache(cache_size, cache_ttl, clock)
        self.key: bytes | None = secrets.token_bytes(32)
        self._ids = itertools.count(1)
        self._open: dict[int, Ticket] = {}
        self._pending: dict[str, int] = {}           # user key -> attempts being checked
        self._lanes: dict[str, asyncio.Lock] = {}    # key -> its turn (only while throttled)
        self._queued: dict[str, int] = {}            # key -> attempts holding or awaiting the turn

    @classmethod
    def for_settings(cls, settings: Any) -> "LoginGate":
        return cls(cache_size=int(getattr(settings, "auth_cache_size", 10_000)),
                   cache_ttl=float(getattr(settings, "auth_cache_ttl", 3600.0)))

    async def enter(self, address: str, user: str, owner: Any = None) -> Ticket:
        """Wait for this attempt's turn and delay; the ticket goes back with `leave`."""
        pol = self.policy
        ukey, akey = "u:" + user, "a:" + address
        by_addr, by_user = self.throttle.failures(address, user)
        lanes = []
        if by_addr >= pol.free_failures:
            lanes.append(akey)
        if by_user + self._pending.get(user, 0) >= pol.free_failures:
            lanes.append(ukey)
        ticket = Ticket(next(self._ids), address, user, owner=owner)
        if any(self._queued.get(k, 0) >= self.MAX_QUEUE for k in lanes):
            ticket.refused = ticket.overflow = True
            log.info("login refused: too many attempts waiting for address %s / user %s", address, user)
            await asyncio.sleep(pol.max_delay)
            return self._issue(ticket)
        held = ticket.keys
        try:
            for k in lanes:  # always the address's turn before the user's: no two wait on each other
                self._queued[k] = self._queued.get(k, 0) + 1
                held.append(k)
                await self._lanes.setdefault(k, asyncio.Lock()).acquire()
                ticket.lanes.append(self._lanes[k])
            by_addr, by_user = self.throttle.failures(address, user)
            wait = pol.delay(max(by_addr, by_user + self._pending.get(user, 0)))
            if wait > 0:
                log.info("login throttled for %.1fs: address %s", wait, address)
                await asyncio.sleep(wait)
        except BaseException:
            self._release(ticket)
            raise
        ticket.refused = self.throttle.refused(address)
        return self._issue(ticket)

    def _issue(self, ticket: Ticket) -> Ticket:
        self._pending[ticket.user] = self._pending.get(ticket.user, 0) + 1
        self._open[ticket.id] = ticket
        try:
            ticket.expiry = asyncio.get_running_loop().call_later(self.LEASE, self._expire, ticket.id)
        except RuntimeError:
            pass
        return ticket

    def _expire(self, ticket_id: int) -> None:
        ticket = self._open.get(ticket_id)
        if ticket is not None:
            log.warning("login attempt of %s held its turn for %.0f s; taken back", ticket.user, self.LEASE)
            self.leave(ticket, False)

    def _release(self, ticket: Ticket) -> None:
        for lock in ticket.lanes:
            if lock.locked():
                lock.release()
        ticket.lanes.clear()
        keys, ticket.keys = ticket.keys, []
        for k in keys:
            n = self._queued.get(k, 0) - 1
            if n > 0:
                self._queued[k] = n
            else:
                self._queued.pop(k, None)
                lock = self._lanes.get(k)
                if lock is not None and not lock.locked():
                    del self._lanes[k]

    async def cached(self, ticket: Ticket, tag: bytes) -> bool:
        return self.match(ticket, tag)

    def match(self, ticket: Ticket, tag: bytes) -> bool:
        """Is `tag` the cached tag of the ticket's user? (Only for an open, not refused ticket.)"""
        if ticket.done or ticket.refused or ticket.id not in self._open:
            return False
        return self.cache.match(ticket.user, tag)

    def leave(self, ticket: Ticket, ok: bool, tag: bytes | None = None) -> None:
        """The attempt's outcome: a failure is counted, a success forgets the user's failures and
        (with a tag) is cached. Frees the attempt's turn."""
        if ticket.done:
            return
        ticket.done = True
        self._open.pop(ticket.id, None)
        if ticket.expiry is not None:
            ticket.expiry.cancel()
        n = self._pending.get(ticket.user, 0) - 1
        if n > 0:
            self._pending[ticket.user] = n
        else:
            self._pending.pop(ticket.user, None)
        if ok and not ticket.refused:
            self.throttle.success(ticket.address, ticket.user)
            if tag is not None:
                self.cache.put(ticket.user, tag)
        else:
            self.throttle.failure(ticket.address, None if ticket.overflow else ticket.user)
        self._release(ticket)

    def ticket(self, ticket_id: int) -> Ticket | None:
        return self._open.get(ticket_id)

    def forget(self, owner: Any) -> None:
        """A worker process is gone: its open attempts count as failures and free their turns."""
        for ticket in [t for t in self._open.values() if t.owner is owner]:
            self.leave(ticket, False)


# -- across processes: the main process answers (GateServer), a worker asks (RemoteGate) ---------

class GateServer:
    """The main process's side: answers the `auth.*` messages of the workers' links."""

    def __init__(self, gate: LoginGate) -> None:
        self.gate = gate
        self._entering: dict[Any, dict[int, asyncio.Task[None]]] = {}

    def hello(self, reply: Callable[[tuple[Any, ...]], None]) -> None:
        """Sent to each worker when it starts: the cache key."""
        reply(("auth.key", self.gate.key))

    def handle(self, owner: Any, msg: tuple[Any, ...], reply: Callable[[tuple[Any, ...]], None]) -> None:
        kind = msg[0]
        if kind == "auth.enter":
            _, rid, address, user = msg
            tasks = self._entering.setdefault(owner, {})
            task = asyncio.get_running_loop().create_task(self._enter(owner, rid, str(address), str(user), reply))
            tasks[rid] = task
            task.add_done_callback(lambda _t: tasks.pop(rid, None))
        elif kind == "auth.cached":
            _, rid, tid, tag = msg
            ticket = self.gate.ticket(int(tid))
            ok = ticket is not None and ticket.owner is owner and isinstance(tag, bytes) \
                and self.gate.match(ticket, tag)
            reply(("auth.reply", rid, ok))
        elif kind == "auth.leave":
            _, tid, ok, tag = msg
            ticket = self.gate.ticket(int(tid))
            if ticket is not None and ticket.owner is owner:
                self.gate.leave(ticket, bool(ok), tag if isinstance(tag, bytes) else None)
        elif kind == "auth.cancel":
            task = self._entering.get(owner, {}).get(int(msg[1]))
            if task is not None:
                task.cancel()
        else:
            log.warning("unknown gate message %r", kind)

    async def _enter(self, owner: Any, rid: int, address: str, user: str,
                     reply: Callable[[tuple[Any, ...]], None]) -> None:
        ticket = await self.gate.enter(address, user, owner)
        reply(("auth.reply", rid, (ticket.id, ticket.refused)))

    def forget(self, owner: Any) -> None:
        for task in list(self._entering.pop(owner, {}).values()):
            task.cancel()
        self.gate.forget(owner)


@dataclass(eq=False)
class RemoteTicket:
    id: int
    refused: bool
    done: bool = False


class RemoteGate:
    """A worker's view of the main process's gate, over the worker's link."""

    TIMEOUT = LoginGate.MAX_QUEUE * ThrottlePolicy().max_delay + 60.0

    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        self._send = send
        self.key: bytes | None = None
        self._rids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    def received(self, msg: tuple[Any, ...]) -> None:
        if msg[0] == "auth.key":
            self.key = msg[1] if isinstance(msg[1], bytes) else None
        elif msg[0] == "auth.reply":
            fut = self._waiting.get(msg[1])
            if fut is not None and not fut.done():
                fut.set_result(msg[2])
            elif isinstance(msg[2], tuple):  # a turn granted to an attempt that gave up waiting
                self._send(("auth.leave", msg[2][0], False, None))

    async def _ask(self, msg_of: Callable[[int], tuple[Any, ...]], timeout: float) -> Any:
        rid = next(self._rids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            self._send(msg_of(rid))
            return await asyncio.wait_for(fut, timeout)
        except BaseException:
            if msg_of(rid)[0] == "auth.enter":
                self._send(("auth.cancel", rid))
            raise
        finally:
            self._waiting.pop(rid, None)

    async def enter(self, address: str, user: str) -> RemoteTicket:
        tid, refused = await self._ask(lambda rid: ("auth.enter", rid, address, user), self.TIMEOUT)
        return RemoteTicket(int(tid), bool(refused))

    async def cached(self, ticket: RemoteTicket, tag: bytes) -> bool:
        return bool(await self._ask(lambda rid: ("auth.cached", rid, ticket.id, tag), 10.0))

    def leave(self, ticket: RemoteTicket, ok: bool, tag: bytes | None = None) -> None:
        if not ticket.done:
            ticket.done = True
            self._send(("auth.leave", ticket.id, bool(ok), tag))
