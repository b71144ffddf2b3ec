"""[milter] settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.milter.affinity import parse_cpus

ON_VIRUS = ("tag", "reject", "hold")
ON_SCAN_ERROR = ("tempfail", "accept")


@dataclass(frozen=True)
class MilterSettings:
    # unix:PATH or inet:PORT@HOST; the default lives inside Postfix's chroot.
    socket: str = "unix:/var/spool/postfix/mailsift/milter.sock"
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
    socket_mode: str = "0660"
    socket_group: str | None = "postfix"
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
        try:
            mode = int(self.socket_mode, 8)
        except ValueError:
            raise ValueError(f"socket_mode {self.socket_mode!r} is not an octal mode") from None
        if mode & ~0o777:
            raise ValueError(f"socket_mode {self.socket_mode!r} out of range")
        if not (self.socket.startswith("unix:") or self.socket.startswith("inet:")
                or self.socket.startswith("inet6:") or self.socket.startswith("/")):
            raise ValueError(f"socket {self.socket!r}: expected unix:PATH or inet:PORT@HOST")
        import ipaddress
        for net in self.skip_networks:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"skip_networks: {net!r} is not an IP network") from None
