"""Bounded resources of `mailsift serve`: connection caps and the file descriptor budget.

Every accepted connection is admitted or refused here before anything else is spent on it
(no TLS handshake, no greeting). Listeners come in three groups, each with its own global cap,
so that no client of one can take what another needs:

    clients  pop3, pop3s, imap, imaps   [store] max_connections (0 = automatic, see below)
    lmtp     lmtp                       [store] lmtp_max_connections
    lookup   the Postfix socketmap      [store] lookup_max_connections

and an address beyond loopback may hold at most `max_connections_per_address` connections of
each group (loopback and unix-socket peers are exempt: webmail, Postfix).

The process's file descriptor limit is raised to its hard limit at start (raise_nofile). With
`max_connections = 0` the clients get at most half of what is left after a base allowance
(FDS_BASE), at FDS_PER_SESSION descriptors each (socket, mailbox index, WAL, shared memory,
lock, one message file), at most MAX_AUTO_CLIENTS; with `max_open_mailboxes = 0` idle
mailboxes get a quarter. The rest stays for LMTP, the lookup and the store.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import socket
import threading
from typing import Any

from mailsift.store.settings import StoreSettings

log = logging.getLogger("mailsift.serve")

GROUPS: dict[str, str] = {"pop3": "clients", "pop3s": "clients", "imap": "clients", "imaps": "clients",
                          "lmtp": "lmtp", "lookup": "lookup"}
FDS_BASE = 64
FDS_PER_SESSION = 6
FDS_PER_MAILBOX = 4
MAX_AUTO_CLIENTS = 1000
MAX_AUTO_MAILBOXES = 1000
# What a refused connection is told (implicit TLS listeners and the lookup: nothing, it is closed).
REFUSALS: dict[str, bytes] = {
    "lmtp": b"421 4.3.2 too many connections, try again later\r\n",
    "pop3": b"-ERR [SYS/TEMP] too many connections, try again later\r\n",
    "imap": b"* BYE [UNAVAILABLE] too many connections, try again later\r\n",
}


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, hard, exc)
    elif hard == resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY:
        try:  # "unlimited" is refused by Linux for files; 1M is the usual kernel ceiling
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1 << 20), hard))
            soft = max(soft, 1 << 20)
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def current_nofile() -> int:
    """The soft RLIMIT_NOFILE in force."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def client_cap(settings: StoreSettings, nofile: int) -> int:
    """The POP3 + IMAP connection cap: the setting, or half the descriptors beyond the base."""
    if settings.max_connections > 0:
        return settings.max_connections
    return max(1, min(MAX_AUTO_CLIENTS, (nofile - FDS_BASE) // 2 // FDS_PER_SESSION))


def mailbox_cap(settings: StoreSettings, nofile: int) -> int:
    """How many idle mailboxes stay open: the setting, or a quarter of the descriptors."""
    if settings.max_open_mailboxes > 0:
        return settings.max_open_mailboxes
    return max(4, min(MAX_AUTO_MAILBOXES, (nofile - FDS_BASE) // 4 // FDS_PER_MAILBOX))


class ConnectionCaps:
    """Counts of open connections per group and per (group, address); thread-safe."""

    def __init__(self, limits: dict[str, int], per_address: int) -> None:
        self.limits = dict(limits)
        self.per_address = per_address
        self.open: dict[str, int] = {group: 0 for group in self.limits}
        self.by_address: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: StoreSettings, nofile: int) -> "ConnectionCaps":
        return cls({"clients": client_cap(settings, nofile), "lmtp": settings.lmtp_max_connections,
                    "lookup": settings.lookup_max_connections}, settings.max_connections_per_address)

    def admit(self, proto: str, address: str | None) -> str | None:
        """Count a new connection of listener `proto` from `address` (None: loopback or a unix
        socket, exempt from the per-address cap). Returns None when admitted (release() it
        later), else why it is refused."""
        group = GROUPS.get(proto, proto)
        with self._lock:
            if self.open.get(group, 0) >= self.limits.get(group, 1 << 30):
                return f"{group}: all {self.limits[group]} connections are in use"
            if address is not None:
                key = (group, address)
                if self.by_address.get(key, 0) >= self.per_address:
                    return f"{group}: {address} already has {self.per_address} connections"
                self.by_address[key] = self.by_address.get(key, 0) + 1
            self.open[group] = self.open.get(group, 0) + 1
            return None

    def release(self, proto: str, address: str | None) -> None:
        group = GROUPS.get(proto, proto)
        with self._lock:
            self.open[group] = max(0, self.open.get(group, 0) - 1)
            if address is not None:
                key = (group, address)
                n = self.by_address.get(key, 0) - 1
                if n > 0:
                    self.by_address[key] = n
                else:
                    self.by_address.pop(key, None)


def is_loopback(peer: Any) -> bool:
    """A unix-socket peer ("" or None) or a loopback address (also IPv4-mapped)."""
    if not isinstance(peer, tuple) or not peer:
        return True  # unix socket
    try:
        ip = ipaddress.ip_address(str(peer[0]).split("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack listener's IPv4 peer
    return ip.is_loopback


def cap_address(peer: Any) -> str | None:
    """What a connection counts against for the per-address cap: the IPv4 address, or the
    IPv6 /64 (one host's usual share); None for loopback and unix-socket peers (exempt)."""
    if is_loopback(peer):
        return None
    text = str(peer[0]).split("%")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return text


def refuse(proto: str, conn: socket.socket) -> None:
    """Tell a connection over a cap so (best effort, never blocking) and close it."""
    line = REFUSALS.get(proto)
    if line is not None:
        try:
            conn.setblocking(False)
            conn.send(line)
        except OSError:
            pass
    conn.close()
