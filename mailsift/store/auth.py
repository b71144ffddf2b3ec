"""Logins for the store's protocols (POP3 and IMAP): the gate, the cache and the plaintext rule.

- `Authenticator.login(address, user, password)` passes the attempt through the server's
  `LoginGate` (store/authgate.py: the failed-login throttle and the auth cache, one for the
  main process and all IMAP workers), then checks the password: a tag that matches the auth
  cache costs no hash; anything else is checked with scrypt in a worker thread (hashing is
  slow on purpose and must not stall the event loop). It answers only True or False: callers
  reply the same words whether the user is unknown, the password wrong, or the address throttled.
- `plaintext_allowed(...)`: passwords in the clear are refused before TLS except from loopback,
  unless `[store] allow_plaintext_anywhere` is set.

`throttle_for(ctx)` is the gate every session of the server shares: the context's `throttle`
(the main process's `LoginGate`, or an IMAP worker's `RemoteGate` to it), otherwise a
process-wide one made on first use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from mailsift.store.authgate import (
    LoginGate, LoginThrottle, RemoteGate, ThrottlePolicy, address_key, cache_tag, user_key,
)

__all__ = ["Authenticator", "LoginGate", "LoginThrottle", "RemoteGate", "ThrottlePolicy", "acceptable_credentials",
           "plaintext_allowed", "throttle_for"]

log = logging.getLogger("mailsift.auth")

MAX_NAME = 255
MAX_PASSWORD = 1024


class UserVerifier(Protocol):
    def canonical(self, name: str) -> str: ...

    def password_hash(self, name: str) -> str | None: ...

    def check(self, password: str, stored: str | None) -> bool: ...


_default_gate: LoginGate | None = None
_default_lock = threading.Lock()


def throttle_for(ctx: Any) -> LoginGate | RemoteGate:
    """The server's shared gate (`ctx.throttle`), else one per process made on first use."""
    t = getattr(ctx, "throttle", None)
    if isinstance(t, (LoginGate, RemoteGate)):
        return t
    global _default_gate
    with _default_lock:
        if _default_gate is None:
            _default_gate = LoginGate()
        return _default_gate


def plaintext_allowed(secure: bool, is_loopback: bool, allow_plaintext_anywhere: bool) -> bool:
    """Passwords may be sent in the clear on TLS, from loopback, or when configured so."""
    return secure or is_loopback or allow_plaintext_anywhere


def acceptable_credentials(user: str, password: str) -> bool:
    """Names and passwords we would never store: too long, control characters, empty name."""
    if not user or len(user) > MAX_NAME or len(password) > MAX_PASSWORD:
        return False
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in user) and "\0" not in password


class Authenticator:
    """Checks a login against the users database through the shared gate."""

    def __init__(self, users: UserVerifier, gate: LoginGate | RemoteGate) -> None:
        self.users = users
        self.gate = gate

    async def refuse(self, address: str, user: str) -> None:
        """An attempt refused before any password check (e.g. a proxy login): it waits and
        counts like a wrong password, so the reply's timing and the throttle are the same."""
        ticket = await self.gate.enter(address_key(address), user_key(self.users, user))
        self.gate.leave(ticket, False)

    async def login(self, address: str, user: str, password: str) -> bool:
        """True only for a good password; every other outcome looks the same to the client.
        Exceptions from the users database propagate (the caller answers a temporary error)."""
        akey, ukey = address_key(address), user_key(self.users, user)
        ticket = await self.gate.enter(akey, ukey)
        ok, tag = False, None
        try:
            if ticket.refused or not acceptable_credentials(user, password):
                log.warning("login refused: address %s", akey)
                return False
            ok, tag = await self._check(ticket, ukey, user, password)
            if not ok:
                log.warning("login failed: address %s", akey)
            return ok
        finally:
            self.gate.leave(ticket, ok, tag if ok else None)

    async def _check(self, ticket: Any, ukey: str, user: str, password: str) -> tuple[bool, bytes | None]:
        key = self.gate.key
        stored = await asyncio.to_thread(self.users.password_hash, user)
        tag = cache_tag(key, ukey, stored, password) if key is not None and stored is not None else None
        if tag is not None and await self.gate.cached(ticket, tag):
            log.debug("login of %s answered from the auth cache", ukey)
            return True, None
        log.debug("login of %s checked with the password hash", ukey)
        ok = bool(await asyncio.to_thread(self.users.check, password, stored))
        return ok, tag

