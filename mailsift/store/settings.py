"""[store] settings."""

from __future__ import annotations

from dataclasses import dataclass


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
    # TLS certificate chain and key (PEM); empty = no TLS.
    tls_cert: str = ""
    tls_key: str = ""
    # Plaintext logins before TLS are refused except from loopback unless this is true.
    allow_plaintext_anywhere: bool = False
