"""The greylisting triplet: client network, normalised sender, recipient.

A sending site retries from any host of its outbound pool, and bulk senders vary the envelope
sender per message; the triplet is made so that such retries still match:

- the client address is reduced to its /24 (IPv4) or /64 (IPv6) network;
- the sender is lower-cased, its `+extension` removed, a BATV tag (`prvs=TAG=user`,
  `msprvs1=TAG=user`, `btv1==TAG==user`) removed and VERP numbers (every all-digit word of
  the local part, and long hexadecimal ids) replaced by `#`;
- the recipient is lower-cased.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

NULL_SENDER = "<>"

_BATV = (
    re.compile(r"^(?:prvs|msprvs\d*)=[^=@]+=(.+)$"),
    re.compile(r"^btv1==[^=@]*==(.+)$"),
)
_NUMBER = re.compile(r"(?<![0-9a-z])[0-9]+(?![0-9a-z])")
_HEX_ID = re.compile(r"(?<![0-9a-z])(?=[0-9a-f]*[0-9])[0-9a-f]{16,}(?![0-9a-z])")


@dataclass(frozen=True)
class Triplet:
    network: str
    sender: str
    recipient: str

    def key(self) -> str:
        """One string for the store (the parts cannot contain a newline)."""
        return f"{self.network}\n{self.sender}\n{self.recipient}"


def parse_address(text: str) -> IPAddress:
    """An IP address as Postfix sends it in client_address; IPv4-mapped IPv6 becomes IPv4."""
    addr = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def client_network(address: str | IPAddress) -> str:
    """`192.0.2.0/24` or `2001:db8:1:2::/64`; raises ValueError for a non-address."""
    addr = parse_address(address) if isinstance(address, str) else address
    if addr.version == 4:
        return f"{ipaddress.IPv4Address(int(addr) & 0xFFFFFF00)}/24"
    return f"{ipaddress.IPv6Address(int(addr) & ~((1 << 64) - 1))}/64"


def normalise_sender(sender: str) -> str:
    sender = sender.strip().lower()
    if sender in ("", "<>"):
        return NULL_SENDER
    local, at, domain = sender.rpartition("@")
    if not at:
        local, domain = sender, ""
    for pattern in _BATV:
        m = pattern.match(local)
        if m:
            local = m.group(1)
            break
    local = local.split("+", 1)[0]
    local = _HEX_ID.sub("#", local)
    local = _NUMBER.sub("#", local)
    return f"{local}@{domain}" if at else local


def normalise_recipient(recipient: str) -> str:
    return recipient.strip().lower()


def make_triplet(client_address: str, sender: str, recipient: str) -> Triplet:
    return Triplet(client_network(client_address), normalise_sender(sender),
                   normalise_recipient(recipient))


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().lower().rstrip(".")


def domain_matches(domain: str, patterns: tuple[str, ...]) -> bool:
    """`example.org` in patterns matches example.org and every subdomain of it."""
    domain = domain.lower().rstrip(".")
    if not domain:
        return False
    for pattern in patterns:
        p = pattern.lower().strip().lstrip(".").rstrip(".")
        if p and (domain == p or domain.endswith("." + p)):
            return True
    return False


def in_networks(addr: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(addr.version == net.version and addr in net for net in networks)
