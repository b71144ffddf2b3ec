"""[classifier] settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailsift.classifier import defaults


@dataclass(frozen=True)
class ClassifierSettings:
    # The model directory (`--dbpath`); relative paths are relative to the working directory.
    dbpath: str = defaults.DBPATH
    # SpamAssassin-style score at and above which a message is spam. The score is
    # 5 + 2.5 * log10(odds / 9) for spam probability p: 5.0 means p >= 0.9, 7.5 p >= 0.99.
    required: float = defaults.REQUIRED
    # A score within this many points of `required` is "unsure" (neither spam nor ham).
    # 1.0 around the default 5.0 is p between about 0.78 and 0.96.
    unsure_points: float = defaults.UNSURE_POINTS
    # Only the first max_bytes of a message are read for tokens (the verdict says "partial").
    max_bytes: int = defaults.MAX_BYTES
    # Saved models kept under DBPATH/versions/ for `mailsift model list/rollback`; 0 = none.
    keep_versions: int = 5
    # Several hosts, one model (mailsift/share/): "redis://HOST:PORT/N" (also rediss://, unix://);
    # "" = off, each host learns into its own model directory.
    share: str = ""
    # The trainer's lease in Redis: another `mailsift serve` takes over this long after the trainer
    # stopped renewing it.
    share_lease_seconds: float = 15.0
    # The classify socket (`mailsift classify` asks the milter, which serves it, for verdicts):
    # "/PATH" or "unix:/PATH"; "" = none (classify loads the model itself).
    socket: str = ""
    # Its permissions: the users whose procmail/maildrop/Sieve runs `classify` must be in the group.
    socket_mode: str = "0660"
    socket_group: str = "mail"

    def validate(self) -> None:
        if self.required <= 0:
            raise ValueError("required must be positive")
        if self.unsure_points < 0:
            raise ValueError("unsure_points must not be negative")
        if self.max_bytes < 1024:
            raise ValueError("max_bytes must be at least 1024")
        if not 0 <= self.keep_versions <= 1000:
            raise ValueError("keep_versions must be between 0 (no model history) and 1000")
        if self.share:
            from mailsift.resp import parse_redis_url  # only when set: not for every command's config

            try:
                parse_redis_url(self.share)
            except ValueError as exc:
                raise ValueError(f"share must be redis://HOST:PORT/N (or rediss://, unix://PATH?db=N): {exc}") from None
        if not 1.0 <= self.share_lease_seconds <= 3600:
            raise ValueError("share_lease_seconds must be between 1 and 3600")
        from mailsift.classifier.route import socket_path
        from mailsift.daemon import parse_mode

        try:
            socket_path(self.socket)
        except ValueError as exc:
            raise ValueError(f"socket: {exc}") from None
        parse_mode(self.socket_mode)
