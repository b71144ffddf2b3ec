"""[store] settings."""

from __future__ import annotations

from dataclasses import dataclass

from mailsift import daemon
from mailsift.store.names import InvalidName, check_domain

LISTENERS = ("lmtp", "pop3", "pop3s", "imap", "imaps", "lookup")


def parse_listen(value: str) -> tuple[str, str | int] | None:
    """The listen grammar of mailsift/daemon.py as the store uses it: "unix:PATH" -> ("unix", PATH);
    "HOST:PORT" / "[V6]:PORT" -> (HOST, PORT); "off" -> None. Raises ValueError."""
    where = daemon.parse_listen(value)
    if where is None:
        return None
    return ("unix", where.path) if where.kind == "unix" else (where.host, where.port)


@dataclass(frozen=True)
class StoreSettings:
    # Maildir++ per user under ROOT/DOMAIN/USER/.
    mail_root: str = "/var/mail/mailsift"
    # The user database (hashed passwords).
    users: str = "/etc/mailsift/users.db"
    # Listeners: "unix:PATH", "HOST:PORT" or "off".
    lmtp: str = "unix:/var/spool/postfix/private/mailsift-lmtp"
    pop3: str = "127.0.0.1:110"
    pop3s: str = "off"
    imap: str = "off"
    imaps: str = "off"
    # Postfix socketmap lookup of valid recipients (virtual_mailbox_maps), so unknown users are
    # refused during the SMTP dialog.
    lookup: str = "unix:/var/spool/postfix/private/mailsift-map"
    # TLS certificate chain and key (PEM); empty = no TLS.
    tls_cert: str = ""
    tls_key: str = ""
    # Plaintext logins before TLS are refused except from loopback unless this is true.
    allow_plaintext_anywhere: bool = False
    # The name in greetings and Maildir file names; empty = this host's name.
    hostname: str = ""
    # Bare user names ("alice") mean alice@default_domain; empty = users are full addresses.
    default_domain: str = ""
    # The delimiter of address details: user+detail@domain is user@domain.
    recipient_delimiter: str = "+"
    # user+folder@domain files into the existing folder "folder" (never a special one: Sent,
    # Drafts, Trash, Junk, Quarantine). Off: detail mail goes to INBOX, as outside senders
    # choose the detail.
    lmtp_detail_folders: bool = False
    # Largest message LMTP accepts (announced as SIZE).
    max_message_size: int = 50 * 1024 * 1024
    # Most recipients in one LMTP transaction.
    max_recipients: int = 1000
    # Recognise a retried LMTP delivery of the exact same bytes (same sender and recipient) and
    # store it once: Postfix resends when the reply to a completed delivery was lost.
    lmtp_dedup: bool = True
    # Seconds an LMTP client may stay silent.
    lmtp_timeout: float = 300.0
    # Started as root, `mailsift serve` binds its listeners and then runs as this user (recommended:
    # a dedicated user owning mail_root; `mailsift user add` hands new mailboxes and the user
    # database to it). Empty = keep running as the starting user.
    run_as: str = ""
    # File mode and group of the unix sockets we create (Postfix's LMTP client and lookups run
    # as the postfix user); missing parent directories are made 0750.
    socket_mode: str = daemon.SOCKET_MODE
    socket_group: str | None = daemon.SOCKET_GROUP
    # IMAP is answered by this many worker processes (one Python process is bound by its GIL);
    # LMTP, POP3, the lookup and the feedback learner stay in the main process. -1 = one per
    # CPU (at most 8; none on a single CPU), 0 = IMAP in the main process.
    imap_workers: int = -1
    # Caps on IMAP connections (0 = the built-in 20 sessions per user, 50 connections per
    # address beyond loopback), enforced across all worker processes.
    imap_max_per_user: int = 0
    imap_max_per_address: int = 0
    # A correct login is remembered (a keyed hash, never the password) for this many users and
    # seconds, so a repeated login costs no scrypt (0 users = off); shared by POP3 and IMAP.
    auth_cache_size: int = 10000
    auth_cache_ttl: float = 3600.0
    # Connection caps, checked as a connection is accepted (serve/conncaps.py). POP3 and IMAP
    # (all four listeners) share `max_connections` (0 = fit half the file descriptor limit, at
    # most 1000); LMTP and the lookup have their own, so no POP3 or IMAP client can take theirs.
    # An address beyond loopback may hold `max_connections_per_address` of each kind.
    max_connections: int = 0
    max_connections_per_address: int = 50
    lmtp_max_connections: int = 64
    lookup_max_connections: int = 128
    # Seconds a POP3 or IMAP client has from connecting to logging in (not restarted by traffic).
    login_timeout: float = 120.0
    # Mailboxes kept open while idle (4 file descriptors each); 0 = fit a quarter of the limit.
    max_open_mailboxes: int = 0
    # Storage each user may fill, in MiB (RFC 9208 QUOTA; 0 = no limit). `mailsift user set NAME
    # --quota-mb N` gives one user another. Past it IMAP APPEND/COPY get NO [OVERQUOTA] and LMTP
    # answers 452 4.2.2 (Postfix keeps the mail queued); MOVE and EXPUNGE always work.
    quota_mb: int = 0

    def validate(self) -> None:
        for name in LISTENERS:
            try:
                parse_listen(getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"{name} = {exc}") from None
        if not self.mail_root.startswith("/"):
            raise ValueError("mail_root must be an absolute path")
        if self.max_message_size <= 0 or self.max_recipients <= 0 or self.lmtp_timeout <= 0:
            raise ValueError("max_message_size, max_recipients and lmtp_timeout must be positive")
        if len(self.recipient_delimiter) > 1 or self.recipient_delimiter in ("@", "."):
            raise ValueError("recipient_delimiter must be one character (or empty)")
        if self.default_domain:
            try:
                check_domain(self.default_domain.lower())
            except InvalidName as exc:
                raise ValueError(str(exc)) from None
        if not -1 <= self.imap_workers <= 64:
            raise ValueError("imap_workers must be -1 (one per CPU), 0 (none) or up to 64")
        if self.imap_max_per_user < 0 or self.imap_max_per_address < 0:
            raise ValueError("imap_max_per_user and imap_max_per_address must be >= 0")
        if self.auth_cache_size < 0 or not 0 < self.auth_cache_ttl <= 86400:
            raise ValueError("auth_cache_size must be >= 0 and auth_cache_ttl within 1 s to 1 day")
        if self.max_connections < 0 or self.max_open_mailboxes < 0:
            raise ValueError("max_connections and max_open_mailboxes must be >= 0 (0 = automatic)")
        if min(self.max_connections_per_address, self.lmtp_max_connections, self.lookup_max_connections) < 1:
            raise ValueError("max_connections_per_address, lmtp_max_connections and lookup_max_connections "
                             "must be at least 1")
        if not 0 < self.login_timeout <= 3600:
            raise ValueError("login_timeout must be between 0 and 3600 seconds")
        if not 0 <= self.quota_mb <= 1 << 30:
            raise ValueError("quota_mb must be 0 (no limit) to 1073741824 MiB")
        daemon.parse_mode(self.socket_mode)
