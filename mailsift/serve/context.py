"""What a protocol session gets from the server: the store, the users, the settings and its connection.

Every protocol handler has the signature

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None

and is listed in mailsift.serve.server.PROTOCOLS. The server closes the writer after the handler
returns (handlers may close it earlier). Store calls block: run them with asyncio.to_thread.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Any

from mailsift.store.api import Store
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users


@dataclass
class SessionContext:
    store: Store
    users: Users
    settings: StoreSettings
    # Server TLS context (mailsift.tls.server_context) when a certificate is configured, else None.
    tls: ssl.SSLContext | None = None
    # True on pop3s/imaps listeners: the connection is already TLS when the handler starts.
    implicit_tls: bool = False
    # The peer: (host, port) for TCP, "" for a unix socket.
    peer: Any = None
    # Loopback TCP or a unix socket.
    is_loopback: bool = False
    # The listener's protocol name ("lmtp", "pop3", "pop3s", "imap", "imaps").
    protocol: str = ""
    # Server-wide state shared by every session of this process (login throttle, POP3 in-use
    # mailboxes, ...). One dict per server; keys are the protocol modules' business.
    shared: dict[str, Any] = field(default_factory=dict)
    # The login throttle shared by every session (mailsift.store.auth), when the server made one.
    throttle: Any = None

    @property
    def tls_active(self) -> bool:
        return self.implicit_tls
