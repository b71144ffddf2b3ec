"""[policy] settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolicySettings:
    # unix:PATH or inet:PORT@HOST
    socket: str = "unix:/var/spool/postfix/private/mailsift-policy"
    # sqlite:PATH or redis://HOST:PORT/N
    db: str = "sqlite:/var/lib/mailsift/greylist.sqlite"
    delay: int = 300
    retry_window: int = 2 * 24 * 3600
    max_age: int = 35 * 24 * 3600
    auto_allow: int = 5
    greylist_loopback: bool = False
    networks: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    recipient_domains: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.delay < 0 or self.retry_window <= 0 or self.max_age <= 0:
            raise ValueError("delay, retry_window and max_age must be positive")
