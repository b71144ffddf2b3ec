"""[milter] settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.daemon import SOCKET_GROUP, SOCKET_MODE, parse_listen, parse_mode, parse_networks
from mailsift.milter.affinity import parse_cpus

ON_VIRUS = ("tag", "reject", "hold")
ON_SCAN_ERROR = ("tempfail", "accept")


@dataclass(frozen=True)
class MilterSettings:
    # unix:PATH, HOST:PORT or [V6]:PORT (Postfix's inet:PORT@HOST too); the default lives inside
    # Postfix's chroot.
    socket: str = "unix:/var/spool/postfix/mailsift/milter.sock"
    # Started as root, the milter opens its socket and then runs as this user, before it loads the
    # model: the user that also runs `mailsift serve` ([store] run_as), so the model its learner
    # writes is one the milter will load. "" = keep running as the starting user.
    user: str = ""
    # unix:PATH or HOST:PORT of clamd.
    clamd: str = "unix:/var/run/clamav/clamd.ctl"
    clamd_timeout: float = 30.0
    # Over a unix socket, hand clamd the message as a file descriptor (FILDES) instead of
    # streaming it (INSTREAM): half the clamd CPU per message. Falls back by itself.
    clamd_pass_fd: bool = True
    on_virus: str = "tag"
    on_scan_error: str = "tempfail"
    # Bytes of a message that are scanned; the rest is passed and the headers say so.
    max_scan_size: int = 25 * 1024 * 1024
    # Skip scanning for SASL-authenticated senders and these client networks.
    skip_authenticated: bool = False
    skip_networks: tuple[str, ...] = ()
    # Permissions of a unix milter socket: Postfix (user postfix) must be able to connect.
    socket_mode: str = SOCKET_MODE
    socket_group: str | None = SOCKET_GROUP
    # Seconds between checks of the model file for a new version.
    reload_interval: float = 1.0
    # Processes that score messages besides the one speaking the milter protocol
    # (0 = score in the milter process; the GIL then serialises scoring).
    score_workers: int = 0
    # CPUs the milter runs on: auto (one CPU: GIL hand-offs between its threads stay on one
    # core; mailsift/milter/affinity.py), all (as started), or CPU numbers such as "1" or "2,3".
    cpus: str = "auto"

    def validate(self) -> None:
        if self.on_virus not in ON_VIRUS:
            raise ValueError(f"on_virus must be one of {', '.join(ON_VIRUS)}")
        if self.on_scan_error not in ON_SCAN_ERROR:
            raise ValueError(f"on_scan_error must be one of {', '.join(ON_SCAN_ERROR)}")
        if self.max_scan_size <= 0:
            raise ValueError("max_scan_size must be positive")
        if self.clamd_timeout <= 0:
            raise ValueError("clamd_timeout must be positive")
        if self.reload_interval <= 0:
            raise ValueError("reload_interval must be positive")
        if self.score_workers < 0:
            raise ValueError("score_workers must be 0 or more")
        parse_cpus(self.cpus)
        parse_mode(self.socket_mode)
        try:
            parse_listen(self.socket, allow_off=False)
        except ValueError as exc:
            raise ValueError(f"socket: {exc}") from None
        try:
            parse_networks(self.skip_networks)
        except ValueError as exc:
            raise ValueError(f"skip_networks: {exc}") from None
