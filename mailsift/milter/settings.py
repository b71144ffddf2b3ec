"""[milter] settings."""

from __future__ import annotations

from dataclasses import dataclass

ON_VIRUS = ("tag", "reject", "hold")
ON_SCAN_ERROR = ("tempfail", "accept")


@dataclass(frozen=True)
class MilterSettings:
    # unix:PATH or inet:PORT@HOST; the default lives inside Postfix's chroot.
    socket: str = "unix:/var/spool/postfix/mailsift/milter.sock"
    # unix:PATH or HOST:PORT of clamd.
    clamd: str = "unix:/var/run/clamav/clamd.ctl"
    clamd_timeout: float = 30.0
    on_virus: str = "tag"
    on_scan_error: str = "tempfail"
    # Bytes of a message that are scanned; the rest is passed and the headers say so.
    max_scan_size: int = 25 * 1024 * 1024
    # Skip scanning for SASL-authenticated senders and these client networks.
    skip_authenticated: bool = False
    skip_networks: tuple[str, ...] = ()

    def validate(self) -> None:
        if self.on_virus not in ON_VIRUS:
            raise ValueError(f"on_virus must be one of {', '.join(ON_VIRUS)}")
        if self.on_scan_error not in ON_SCAN_ERROR:
            raise ValueError(f"on_scan_error must be one of {', '.join(ON_SCAN_ERROR)}")
        if self.max_scan_size <= 0:
            raise ValueError("max_scan_size must be positive")
