"""The greylisting decision, with an injectable clock.

    first sight of a triplet          -> DEFER_IF_PERMIT 4.7.1 Greylisted, retry in N seconds
    retry before `delay`              -> the same, with the seconds left
    retry after `delay`, within
      `retry_window` of the first     -> PREPEND X-Greylist: delayed N seconds by mailsift-X.Y
    later mail on a passed triplet    -> DUNNO (remembered `max_age` after its last use)
    a client network that passed
      `auto_allow` times (one count
      per hour at most)               -> DUNNO without looking at triplets
    authenticated (sasl_username),
      configured networks, sender or
      recipient domains, loopback     -> DUNNO
    the store failing                 -> DUNNO and a warning (our faults never block mail)

DEFER_IF_PERMIT rather than DEFER: a later restriction that rejects the mail outright wins.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mailsift import __version__
from mailsift.daemon import parse_networks
from mailsift.policy.backends import ClientEntry, GreylistStore, StoreError, TripletEntry
from mailsift.policy.settings import PolicySettings
from mailsift.policy.triplet import (IPAddress, Triplet, client_network, domain_matches,
                                     domain_of, in_networks, normalise_recipient,
                                     normalise_sender, parse_address)

log = logging.getLogger("mailsift.policy")

Clock = Callable[[], float]

DUNNO = "DUNNO"
COUNT_INTERVAL = 3600.0  # a client network earns at most one auto_allow count per hour
REFRESH_INTERVAL = 3600.0  # a passed triplet's last use is rewritten at most this often
STORE_RETRY = 5.0  # after a store failure, answer DUNNO without trying for this long


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str  # new, early, passed, known, auto-allowed, sasl, network, ... (for the log)
    triplet: Triplet | None = None

    @property
    def prepends(self) -> bool:
        return self.action.startswith("PREPEND ")


class OffsetClock:
    """FOR TESTING: wall-clock time plus the number of seconds written in a file (absent
    or unreadable file = 0), read at every call so a test can move time forward."""

    def __init__(self, path: str | Path, base: Clock = time.time) -> None:
        self.path = Path(path)
        self.base = base

    def __call__(self) -> float:
        try:
            offset = float(self.path.read_text().strip() or 0)
        except (OSError, ValueError):
            offset = 0.0
        return self.base() + offset


class Greylister:
    def __init__(self, settings: PolicySettings, store: GreylistStore, clock: Clock = time.time,
                 version: str = __version__) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.header = f"mailsift-{version}"
        self.networks = parse_networks(settings.networks)
        self._store_down_until = 0.0

    async def decide(self, request: dict[str, str]) -> Decision:
        exempt, addr = self._exemption(request)
        if addr is None:
            return Decision(DUNNO, exempt)
        triplet = Triplet(client_network(addr), normalise_sender(request.get("sender", "")),
                          normalise_recipient(request["recipient"]))
        mono = time.monotonic()
        if mono < self._store_down_until:
            return Decision(DUNNO, "store-down", triplet)
        try:
            decision = await self._greylist(triplet, self.clock())
        except StoreError as exc:
            self._store_down_until = mono + STORE_RETRY
            log.warning("greylist store failed, letting mail through (DUNNO) for %.0fs: %s",
                        STORE_RETRY, exc)
            return Decision(DUNNO, "store-failed", triplet)
        if self._store_down_until:
            self._store_down_until = 0.0
            log.warning("greylist store is back")
        return decision

    def _exemption(self, request: dict[str, str]) -> tuple[str, IPAddress | None]:
        """Why this request is never greylisted and no address; or "" and the client address."""
        state = request.get("protocol_state", "RCPT").upper()
        if state != "RCPT":
            return f"state-{state.lower()}", None
        if request.get("sasl_username"):
            return "sasl", None
        if not request.get("recipient"):
            return "no-recipient", None
        try:
            addr = parse_address(request.get("client_address", ""))
        except ValueError:
            return "no-client-address", None
        if addr.is_loopback and not self.settings.greylist_loopback:
            return "loopback", None
        if self.networks and in_networks(addr, self.networks):
            return "network", None
        if self.settings.sender_domains and domain_matches(
                domain_of(request.get("sender", "")), self.settings.sender_domains):
            return "sender-domain", None
        if self.settings.recipient_domains and domain_matches(
                domain_of(request["recipient"]), self.settings.recipient_domains):
            return "recipient-domain", None
        return "", addr

    async def _greylist(self, triplet: Triplet, now: float) -> Decision:
        s = self.settings
        key = triplet.key()
        entry, client = await self.store.lookup(key, triplet.network)
        if s.auto_allow > 0:
            if client is not None and client.count >= s.auto_allow and now - client.last_seen <= s.max_age:
                if now - client.last_seen >= REFRESH_INTERVAL:
                    await self.store.put_client(triplet.network,
                                                ClientEntry(client.count, client.last_counted, now),
                                                now, s.max_age)
                return Decision(DUNNO, "auto-allowed", triplet)
        if entry is not None:
            expired = (now - entry.last_seen > s.max_age) if entry.passed else \
                (now - entry.first_seen > s.retry_window)
            if expired:
                entry = None
        if entry is None:
            await self.store.put_triplet(key, TripletEntry(now, now, False), now, s.retry_window)
            return Decision(self._defer(s.delay), "new", triplet)
        if not entry.passed:
            waited = now - entry.first_seen
            if waited < s.delay:
                return Decision(self._defer(s.delay - waited), "early", triplet)
            await self.store.put_triplet(key, TripletEntry(entry.first_seen, now, True), now, s.max_age)
            await self._count_client(triplet.network, client, now)
            delayed = int(waited)
            return Decision(f"PREPEND X-Greylist: delayed {delayed} seconds by {self.header}",
                            "passed", triplet)
        if now - entry.last_seen >= REFRESH_INTERVAL:
            await self.store.put_triplet(key, TripletEntry(entry.first_seen, now, True), now, s.max_age)
        await self._count_client(triplet.network, client, now)
        return Decision(DUNNO, "known", triplet)

    async def _count_client(self, network: str, client: ClientEntry | None, now: float) -> None:
        s = self.settings
        if s.auto_allow <= 0:
            return
        if client is None or now - client.last_seen > s.max_age:
            new = ClientEntry(1, now, now)
        elif now - client.last_counted >= COUNT_INTERVAL:
            new = ClientEntry(client.count + 1, now, now)
        elif now - client.last_seen >= REFRESH_INTERVAL:
            new = ClientEntry(client.count, client.last_counted, now)
        else:
            return
        await self.store.put_client(network, new, now, s.max_age)

    @staticmethod
    def _defer(seconds: float) -> str:
        return f"DEFER_IF_PERMIT 4.7.1 Greylisted, retry in {max(1, math.ceil(seconds))} seconds"

    async def purge(self) -> int:
        return await self.store.purge(self.clock())
