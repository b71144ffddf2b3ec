"""[metrics] settings: where each daemon serves its Prometheus metrics (off by default)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

DAEMONS = ("milter", "store", "policy")


def parse_address(value: str) -> tuple[str, int] | None:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port); "" or "off" -> None. Raises ValueError."""
    value = value.strip()
    if value in ("", "off"):
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected HOST:PORT (such as 127.0.0.1:9181) or off")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class MetricsSettings:
    # HOST:PORT where `mailsift milter`, `mailsift serve` ([store]) and `mailsift policy` serve
    # /metrics (Prometheus text format); empty = off.
    milter: str = ""
    store: str = ""
    policy: str = ""
    # Addresses beyond loopback are refused unless this is true (the metrics name no user, but
    # they tell anyone who can reach them how much mail flows and which logins fail).
    allow_remote: bool = False

    def address(self, daemon: str) -> tuple[str, int] | None:
        return parse_address(getattr(self, daemon))

    def validate(self) -> None:
        seen: dict[tuple[str, int], str] = {}
        for daemon in DAEMONS:
            try:
                where = self.address(daemon)
            except ValueError as exc:
                raise ValueError(f"{daemon} = {exc}") from None
            if where is None:
                continue
            if not self.allow_remote and not is_loopback(where[0]):
                raise ValueError(f"{daemon} = {getattr(self, daemon)!r} is not a loopback address; "
                                 "set allow_remote = true to serve metrics beyond this host")
            if where in seen:
                raise ValueError(f"{daemon} and {seen[where]} both use {where[0]}:{where[1]}")
            seen[where] = daemon
