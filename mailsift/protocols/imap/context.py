"""What an IMAP session works with, typed: its connection (`ImapContext`) and what every IMAP
session of the process shares (`ImapServices`).

`mailsift serve` hands each session a `serve.context.SessionContext`; `ImapContext.of` takes
what IMAP needs from it once, so the session reads attributes, never string keys:
- `ImapServices`, one per process (kept in the server's `shared` dict under one key): the
  worker threads for blocking store calls (storethreads.py), the header cache
  (headercache.py), the connection counts per address and per user, and in IMAP worker
  processes the connection limiter that counts for all of them (serve/workers.WorkerLink, put
  in `shared` by serve/workers_main.py);
- the login gate (store/auth.py) and the connection's facts: peer address, loopback, TLS.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Protocol

from mailsift.protocols.imap.headercache import HeaderCache
from mailsift.protocols.imap.storethreads import StoreThreads
from mailsift.serve.context import SessionContext
from mailsift.store.api import Store
from mailsift.store.auth import throttle_for
from mailsift.store.authgate import LoginGate, RemoteGate
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users

STORE_THREADS = 4               # worker threads for store calls, shared by all IMAP sessions (measured:
                                # more threads only fight over the GIL, fewer leave fsync waits idle)
SERVICES_KEY = "imap"           # ImapServices in SessionContext.shared
LIMITER_KEY = "imap.limiter"    # the WorkerLink in SessionContext.shared (serve/workers_main.py)


class ConnectionLimiter(Protocol):
    """Connection caps counted across processes (serve/workers.WorkerLink)."""

    async def acquire(self, what: str, key: str, cap: int) -> bool: ...

    def release(self, what: str, key: str) -> None: ...


@dataclass
class ImapServices:
    """Shared by every IMAP session of one process."""
    threads: StoreThreads
    headers: HeaderCache
    limiter: ConnectionLimiter | None = None   # None: this process counts alone
    by_address: dict[str, int] = field(default_factory=dict)
    by_user: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, ctx: SessionContext) -> ImapServices:
        """The process's services, made by its first IMAP session."""
        found = ctx.shared.get(SERVICES_KEY)
        if isinstance(found, cls):
            return found
        made = cls(threads=StoreThreads(STORE_THREADS, "imap-store"), headers=HeaderCache(),
                   limiter=ctx.shared.get(LIMITER_KEY))
        ctx.shared[SERVICES_KEY] = made
        return made


def peer_address(peer: object) -> str:
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return str(peer) if peer else "local"


@dataclass(frozen=True)
class ImapContext:
    """One IMAP connection's view of the server."""
    store: Store
    users: Users
    settings: StoreSettings
    tls: ssl.SSLContext | None      # for STARTTLS; None without a certificate
    implicit_tls: bool              # imaps: TLS from the start
    is_loopback: bool
    address: str                    # the peer's address, for logs, caps and the login throttle
    protocol: str                   # "imap" or "imaps" (metrics)
    gate: LoginGate | RemoteGate    # the login throttle and cache (store/auth.py)
    services: ImapServices

    @classmethod
    def of(cls, ctx: SessionContext) -> ImapContext:
        return cls(store=ctx.store, users=ctx.users, settings=ctx.settings, tls=ctx.tls,
                   implicit_tls=bool(ctx.implicit_tls), is_loopback=bool(ctx.is_loopback),
                   address=peer_address(ctx.peer), protocol=ctx.protocol, gate=throttle_for(ctx),
                   services=ImapServices.of(ctx))
