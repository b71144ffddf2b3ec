"""Logins for the store's protocols (POP3 now, IMAP next): throttling and the plaintext rule.

- `LoginThrottle` counts failed logins per client address and per user name in a sliding
  window. Each attempt waits `delay(address, user)` before its password is checked, growing
  exponentially once a few failures have been seen; an address with very many failures is
  refused outright (still after the delay) until its failures age out. A user's own failures
  delay everyone who tries that name, but never lock it: an attacker cannot shut a user out.
- `Authenticator.login(address, user, password)` applies the throttle and checks the password
  with the users database in a worker thread (hashing is slow on purpose and must not stall
  the event loop). It answers only True or False: callers reply the same words whether the
  user is unknown, the password wrong, or the address throttled.
- `plaintext_allowed(...)`: passwords in the clear are refused before TLS except from loopback,
  unless `[store] allow_plaintext_anywhere` is set.

One throttle is shared by every session of a process: `throttle_for(ctx)` takes the
context's `throttle` attribute when the server provides one, otherwise a process-wide
instance made on first use.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol

log = logging.getLogger("mailsift.auth")

MAX_NAME = 255
MAX_PASSWORD = 1024


class UserVerifier(Protocol):
    def verify(self, name: str, password: str) -> bool: ...


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int = 3          # failures (per address or user) tolerated without delay
    base_delay: float = 1.0         # seconds for the first delayed attempt, doubling after
    max_delay: float = 15.0
    window: float = 900.0           # seconds a failure is remembered
    max_address_failures: int = 50  # beyond this an address is refused until failures age out


class LoginThrottle:
    """Failed-login bookkeeping per address and per user name (thread-safe, bounded)."""

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
        by_addr, by_user = self.failures(address, user)
        n = max(by_addr, by_user) - self.policy.free_failures
        if n <= 0:
            return 0.0
        return min(self.policy.max_delay, self.policy.base_delay * (2.0 ** min(n - 1, 30)))

    def refused(self, address: str) -> bool:
        """True when this address has failed so often that no password is checked."""
        by_addr, _ = self.failures(address, "")
        return by_addr >= self.policy.max_address_failures

    def failure(self, address: str, user: str) -> None:
        now = self._clock()
        with self._lock:
            if len(self._failures) >= self.MAX_KEYS:
                self._prune(now)
            for key in ("a:" + address, "u:" + user.lower()):
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


_default_throttle: LoginThrottle | None = None
_default_lock = threading.Lock()


def throttle_for(ctx: Any) -> LoginThrottle:
    """The server's shared throttle (`ctx.throttle`), else one per process made on first use."""
    t = getattr(ctx, "throttle", None)
    if isinstance(t, LoginThrottle):
        return t
    global _default_throttle
    with _default_lock:
        if _default_throttle is None:
            _default_throttle = LoginThrottle()
        return _default_throttle


def plaintext_allowed(secure: bool, is_loopback: bool, allow_plaintext_anywhere: bool) -> bool:
    """Passwords may be sent in the clear on TLS, from loopback, or when configured so."""
    return secure or is_loopback or allow_plaintext_anywhere


def acceptable_credentials(user: str, password: str) -> bool:
    """Names and passwords we would never store: too long, control characters, empty name."""
    if not user or len(user) > MAX_NAME or len(password) > MAX_PASSWORD:
        return False
    return not any(ord(c) < 0x20 or ord(c) == 0x7F for c in user) and "\0" not in password


class Authenticator:
    """Checks a login against the users database under the throttle."""

    def __init__(self, users: UserVerifier, throttle: LoginThrottle) -> None:
        self.users = users
        self.throttle = throttle

    async def refuse(self, address: str, user: str) -> None:
        """An attempt refused before any password check (e.g. a proxy login): it waits and
        counts like a wrong password, so the reply's timing and the throttle are the same."""
        wait = self.throttle.delay(address, user)
        if wait > 0:
            await asyncio.sleep(wait)
        self.throttle.failure(address, user)

    async def login(self, address: str, user: str, password: str) -> bool:
        """True only for a good password; every other outcome looks the same to the client.
        Exceptions from the users database propagate (the caller answers a temporary error)."""
        wait = self.throttle.delay(address, user)
        if wait > 0:
            log.info("login throttled for %.1fs: address %s", wait, address)
            await asyncio.sleep(wait)
        if self.throttle.refused(address) or not acceptable_credentials(user, password):
            self.throttle.failure(address, user)
            log.warning("login refused: address %s", address)
            return False
        ok = bool(await asyncio.to_thread(self.users.verify, user, password))
        if ok:
            self.throttle.success(address, user)
        else:
            self.throttle.failure(address, user)
            log.warning("login failed: address %s", address)
        return ok
