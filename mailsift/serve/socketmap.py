"""Postfix socketmap lookups (socketmap_table(5)) answering "is this a mailbox we serve?".

Requests and replies are netstrings: "NAME KEY" -> "OK VALUE" | "NOTFOUND " | "TEMP reason" | "PERM reason".
Maps:
    mailbox  KEY = an address (user or user+detail@domain) -> OK domain/user/ when the user exists
    domain   KEY = a domain -> OK when some user has an address there
Postfix uses them as `virtual_mailbox_maps` and `virtual_mailbox_domains`, so mail for unknown
users is refused with 550 during the SMTP dialog (no backscatter); when mailsift is down Postfix
answers 451 (a temporary failure).
"""

from __future__ import annotations

import asyncio
import logging

from mailsift.serve.context import SessionContext
from mailsift.store.names import InvalidName, split_address

log = logging.getLogger("mailsift.socketmap")
MAX_REQUEST = 10000


def netstring(text: str) -> bytes:
    data = text.encode("utf-8")
    return str(len(data)).encode() + b":" + data + b","


def lookup(ctx: SessionContext, name: str, key: str) -> str:
    users = ctx.users
    if name == "mailbox":
        try:
            local, domain, _detail = split_address(key, ctx.settings.recipient_delimiter)
        except InvalidName:
            return "NOTFOUND "
        return f"OK {domain}/{local}/" if users.exists(f"{local}@{domain}") else "NOTFOUND "
    if name == "domain":
        key = key.lower().rstrip(".")
        return "OK " + key if any(u.endswith("@" + key) for u in users.list()) else "NOTFOUND "
    return "PERM unknown map " + name[:50]


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
    while True:
        try:
            head = await asyncio.wait_for(reader.readuntil(b":"), 100.0)
            length = int(head[:-1])
            if not 0 <= length <= MAX_REQUEST:
                raise ValueError("request too long")
            body = await reader.readexactly(length + 1)
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            return
        except (ValueError, asyncio.LimitOverrunError):
            writer.write(netstring("PERM malformed request"))
            return
        if body[-1:] != b",":
            writer.write(netstring("PERM malformed request"))
            return
        name, _, key = body[:-1].decode("utf-8", "replace").partition(" ")
        try:
            answer = await asyncio.to_thread(lookup, ctx, name, key)
        except Exception:
            log.exception("lookup %s failed", name)
            answer = "TEMP lookup failed"
        writer.write(netstring(answer))
        await writer.drain()
