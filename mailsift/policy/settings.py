"""[policy] settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.daemon import SOCKET_GROUP, SOCKET_MODE, parse_listen, parse_mode, parse_networks


@dataclass(frozen=True)
class PolicySettings:
    # unix:PATH, HOST:PORT or [V6]:PORT (Postfix's inet:PORT@HOST is read too)
    socket: str = "unix:/var/spool/postfix/private/mailsift-policy"
    # Mode and group of a unix socket (Postfix's smtpd runs as the postfix user).
    socket_mode: str = SOCKET_MODE
    socket_group: str | None = SOCKET_GROUP
    # sqlite:PATH or redis://HOST:PORT/N
    db: str = "sqlite:/var/lib/mailsift/greylist.sqlite"
    # Seconds a new triplet is refused before a retry passes.
    delay: int = 300
    # A retry later than this after the first attempt starts over.
    retry_window: int = 2 * 24 * 3600
    # A triplet that passed is remembered this long after its last use.
    max_age: int = 35 * 24 * 3600
    # A client network that passed this many times (one count per hour) skips greylisting; 0 = off.
    auto_allow: int = 5
    # Loopback clients (127.0.0.0/8, ::1) are never greylisted unless this is true.
    greylist_loopback: bool = False
    # Never greylisted: client networks (CIDR), sender domains, recipient domains
    # (a domain also matches its subdomains).
    networks: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    # Connections idle longer than this (seconds) are closed (Postfix closes its own after 300).
    idle_timeout: int = 600
    # More simultaneous connections than this are closed at once (Postfix then tempfails).
    max_connections: int = 1000
    # Started as root: run as this user once the socket is open ("" = stay as started; checked
    # when the service starts). A missing SQLite directory is created for this user.
    user: str = ""

    def validate(self) -> None:
        from mailsift.policy.backends import check_store_url  # sqlite3: not for every command's config

        if self.delay < 0 or self.retry_window <= 0 or self.max_age <= 0:
            raise ValueError("delay must not be negative; retry_window and max_age must be positive")
        if self.retry_window <= self.delay:
            raise ValueError("retry_window must be longer than delay")
        if self.auto_allow < 0:
            raise ValueError("auto_allow must not be negative (0 turns it off)")
        if self.idle_timeout <= 0:
            raise ValueError("idle_timeout must be positive")
        if self.max_connections <= 0:
            raise ValueError("max_connections must be positive")
        parse_mode(self.socket_mode)
        try:
            parse_listen(self.socket, allow_off=False)
        except ValueError as exc:
            raise ValueError(f"socket: {exc}") from None
        check_store_url(self.db)
        try:
            parse_networks(self.networks)
        except ValueError as exc:
            raise ValueError(f"networks: {exc}") from None
