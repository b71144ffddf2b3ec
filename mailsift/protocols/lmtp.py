"""LMTP (RFC 2033) over the store API: the parser (pure, on bytes) and the session.

    LHLO, MAIL FROM:<> [SIZE=n] [BODY=7BIT|8BITMIME], RCPT TO:<>, DATA, RSET, NOOP, VRFY, HELP, QUIT
    extensions: PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SIZE

After DATA there is one reply per accepted recipient, in RCPT order. A 250 means the message is
fsynced in the Maildir and indexed. Unknown recipients get 550 5.1.1 at RCPT; our own faults
(disk full, index busy, exceptions) answer 4xx so Postfix keeps the mail queued; never 5xx.

Filing, by the verdict headers as mailsift.verdict.read_headers reads them: "X-Virus-Status:
Infected" -> Quarantine, "X-Spam-Flag: YES" -> Junk, else (with lmtp_detail_folders) the folder
named by the address detail (user+Folder@domain) when it exists and is not a special folder
(Sent, Drafts, Trash, Junk, Quarantine: an outside sender chooses the detail), else INBOX. Mail
the milter could not scan fully (Unscanned, partial scan) is filed the same way and the reply
says "not fully virus-scanned". Each copy gets "Return-Path:" and "Delivered-To:" headers. A
retry of the exact same bytes for the same sender and recipient (Postfix resending after a
reply it never saw) is recognised and not stored twice.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field

from mailsift.ops import metrics
from mailsift.protocols.linereader import LineReader, TooLong
from mailsift.store.api import INBOX, JUNK, QUARANTINE, STANDARD_FOLDERS, Delivered, Mailbox, Store, StoreError
from mailsift.store.api import OverQuota
from mailsift.serve.context import SessionContext
from mailsift.store.names import InvalidName, split_address
from mailsift.verdict import HeaderVerdict, read_headers

log = logging.getLogger("mailsift.lmtp")

MAX_LINE = 2048
MAX_ERRORS = 20
CHUNK = 256 * 1024


class LMTPSyntaxError(ValueError):
    """A command that cannot be parsed; str() is the reply text."""


@dataclass(frozen=True)
class Command:
    verb: str
    arg: str


def parse_command(line: bytes) -> Command:
    """One command line (with or without its CRLF) -> Command(VERB, argument). Raises LMTPSyntaxError."""
    line = line.rstrip(b"\r\n")
    if b"\x00" in line:
        raise LMTPSyntaxError("NUL byte in command")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise LMTPSyntaxError("non-ASCII command") from None
    if any(ord(c) < 32 and c != "\t" for c in text):
        raise LMTPSyntaxError("control character in command")
    verb, _, arg = text.strip().partition(" ")
    if not verb:
        raise LMTPSyntaxError("empty command")
    return Command(verb.upper(), arg.strip())


_PATH_RE = re.compile(r"^(FROM|TO):\s*<([^<>\s]*)>(.*)$", re.IGNORECASE)


def parse_path(arg: str, kind: str) -> tuple[str, dict[str, str]]:
    """'FROM:<a@b> SIZE=10 BODY=8BITMIME' -> ('a@b', {'SIZE': '10', 'BODY': '8BITMIME'}).
    Source routes (<@x:a@b>) are stripped. Raises LMTPSyntaxError."""
    m = _PATH_RE.match(arg)
    if not m or m.group(1).upper() != kind:
        raise LMTPSyntaxError(f"syntax: {'MAIL FROM' if kind == 'FROM' else 'RCPT TO'}:<address>")
    addr = m.group(2)
    if addr.startswith("@") and ":" in addr:
        addr = addr.split(":", 1)[1]
    params: dict[str, str] = {}
    for item in m.group(3).split():
        key, _, value = item.partition("=")
        if not key.isalnum() and "-" not in key:
            raise LMTPSyntaxError(f"bad parameter {item}")
        params[key.upper()] = value
    return addr, params


def verdict_folder(data: bytes) -> str | None:
    """Quarantine for X-Virus-Status: Infected, Junk for X-Spam-Flag: YES, else None (headers only)."""
    return _verdict_folder(read_headers(data))


def _verdict_folder(found: HeaderVerdict) -> str | None:
    if found.infected:
        return QUARANTINE
    if found.spam:
        return JUNK
    return None


def detail_folder(box: Mailbox, detail: str | None) -> str | None:
    """The existing folder an address detail names, unless it is INBOX or a special folder."""
    if not detail:
        return None
    name = box.find_folder(detail)
    if name is None or name == INBOX or name in STANDARD_FOLDERS:
        return None
    try:
        if box.folder(name).special_use:
            return None
    except StoreError:
        return None
    return name


class _Input(LineReader):
    """Command lines (protocols/linereader.py: lines with their CRLF, at most MAX_LINE bytes, each
    wait bounded by [store] lmtp_timeout) and dot-stuffed DATA from a StreamReader."""

    def __init__(self, reader: asyncio.StreamReader, timeout: float) -> None:
        super().__init__(reader, MAX_LINE, timeout, chunk=CHUNK)

    async def data(self, limit: int) -> tuple[bytes | None, bool]:
        """Read dot-stuffed DATA up to CRLF.CRLF. -> (unstuffed message, too_big); (None, _) at EOF.
        Beyond `limit` bytes the rest is read and thrown away."""
        body = bytearray(b"\r\n")
        too_big = False
        pos = 0
        while True:
            body += self.buf
            self.clear()
            i = body.find(b"\r\n.\r\n", max(0, pos - 4))
            if i >= 0:
                self.buf[:0] = body[i + 5:]
                if too_big or i > limit:
                    return b"", True
                # A line's leading dot is dropped after a bare LF too (as Dovecot's dot stream
                # does); only CRLF.CRLF ends the data.
                msg = bytes(body[:i + 2]).replace(b"\n..", b"\n.")
                return msg[2:], False
            if len(body) > limit + 2 + 5:
                too_big = True
                del body[:-5]
            pos = len(body)
            if not await self.fill():
                return None, too_big


@dataclass
class _Txn:
    sender: str | None = None
    rcpts: list[tuple[str, str, str | None]] = field(default_factory=list)  # (address, user, detail)


def _deliver_all(store: Store, data: bytes, sender: str, rcpts: list[tuple[str, str, str | None]],
                 dedup: bool, detail_folders: bool = False) -> list[str]:
    """Deliver to every recipient (in a worker thread); one reply line per recipient."""
    replies = []
    found = read_headers(data)
    filed = _verdict_folder(found)
    unscanned = found.note()
    if unscanned:
        log.info("message from <%s>: %s", sender, unscanned)
    digest_base = hashlib.sha256(data).hexdigest()
    for address, user, detail in rcpts:
        try:
            box = store.mailbox(user)
            folder = filed
            if folder is None:
                folder = (detail_folder(box, detail) if detail_folders else None) or INBOX
            copy = (f"Return-Path: <{sender}>\r\nDelivered-To: {address}\r\n").encode("ascii", "replace") + data
            key = hashlib.sha256(f"{sender}\x00{address}\x00{digest_base}".encode()).hexdigest() if dedup else None
            d: Delivered = box.deliver(copy, folder=folder, dedup_key=key)
            note = " (duplicate of an earlier delivery)" if d.duplicate else ""
            if unscanned:
                note += f" ({unscanned})"
            log.info("<%s>: %s %s uid %d, %d bytes, from <%s>", address, "already in" if d.duplicate else "saved to",
                     d.folder, d.uid, len(copy), sender)
            replies.append(f"250 2.0.0 <{address}> delivered to {d.folder} uid {d.uid}{note}")
        except OverQuota as exc:  # temporary (Postfix keeps it queued), never 5xx: store/quota.py
            log.info("<%s>: not delivered, %s", address, exc)
            replies.append(f"452 4.2.2 <{address}> mailbox full, try again later")
        except OSError as exc:
            log.error("delivery to %s failed: %s", user, exc)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                replies.append(f"452 4.2.2 <{address}> mailbox full, try again later")
            else:
                replies.append(f"451 4.3.0 <{address}> local error, try again later")
        except Exception:
            log.exception("delivery to %s failed", user)
            replies.append(f"451 4.3.0 <{address}> local error, try again later")
    return replies


class LMTPSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
        self.ctx = ctx
        self.s = ctx.settings
        self.inp = _Input(reader, self.s.lmtp_timeout)
        self.writer = writer
        self.hostname = ctx.shared.get("hostname") or self.s.hostname or "localhost"
        self.greeted = False
        self.txn: _Txn | None = None
        self.errors = 0

    async def reply(self, *lines: str) -> None:
        self.writer.write("".join(f"{ln}\r\n" for ln in lines).encode("ascii", "replace"))
        if not self.inp.buffered():  # PIPELINING: flush when the client waits for us
            await self.writer.drain()

    async def run(self) -> None:
        await self.reply(f"220 {self.hostname} LMTP mailsift ready")
        try:
            while True:
                if self.errors >= MAX_ERRORS:
                    await self.reply("421 4.7.0 too many errors, closing")
                    return
                line = await self.inp.line()
                if line is None:
                    return
                if isinstance(line, TooLong):
                    await self.bad("500 5.5.2 line too long")
                    continue
                try:
                    cmd = parse_command(line)
                except LMTPSyntaxError as exc:
                    await self.bad(f"500 5.5.2 {exc}")
                    continue
                handler = getattr(self, f"do_{cmd.verb.lower()}", None) if cmd.verb.isalpha() else None
                if handler is None:
                    await self.bad("500 5.5.2 command unrecognized")
                    continue
                if await handler(cmd.arg) is False:
                    return
        except asyncio.TimeoutError:
            await self.reply("421 4.4.2 timeout, closing")
        except asyncio.CancelledError:  # the server is stopping
            try:
                self.writer.write(b"421 4.3.2 service shutting down\r\n")
            except Exception:
                pass
            raise
        finally:
            try:
                await self.writer.drain()
            except (ConnectionError, RuntimeError):
                pass

    async def bad(self, text: str) -> None:
        self.errors += 1
        await self.reply(text)

    async def do_lhlo(self, arg: str) -> None:
        if not arg:
            await self.bad("501 5.5.4 syntax: LHLO hostname")
            return
        self.greeted = True
        self.txn = None
        await self.reply(f"250-{self.hostname}", "250-PIPELINING", "250-ENHANCEDSTATUSCODES", "250-8BITMIME",
                         f"250 SIZE {self.s.max_message_size}")

    async def do_helo(self, arg: str) -> None:
        await self.bad("500 5.5.1 this is LMTP: use LHLO")

    do_ehlo = do_helo

    async def do_mail(self, arg: str) -> None:
        if not self.greeted:
            await self.bad("503 5.5.1 send LHLO first")
            return
        if self.txn is not None:
            await self.bad("503 5.5.1 nested MAIL command")
            return
        try:
            sender, params = parse_path(arg, "FROM")
        except LMTPSyntaxError as exc:
            await self.bad(f"501 5.5.4 {exc}")
            return
        if sender and sender.count("@") != 1:
            await self.bad("501 5.1.7 bad sender address syntax")
            return
        for key, value in params.items():
            if key == "SIZE":
                if not value.isdigit():
                    await self.bad("501 5.5.4 bad SIZE value")
                    return
                if int(value) > self.s.max_message_size:
                    await self.reply(f"552 5.3.4 message too big (limit {self.s.max_message_size} bytes)")
                    return
            elif key == "BODY":
                if value.upper() not in ("7BIT", "8BITMIME"):
                    await self.bad("501 5.5.4 BODY must be 7BIT or 8BITMIME")
                    return
            else:
                await self.bad(f"555 5.5.4 unsupported parameter {key}")
                return
        self.txn = _Txn(sender=sender)
        await self.reply("250 2.1.0 sender ok")

    async def do_rcpt(self, arg: str) -> None:
        if self.txn is None:
            await self.bad("503 5.5.1 need MAIL before RCPT")
            return
        try:
            address, params = parse_path(arg, "TO")
        except LMTPSyntaxError as exc:
            await self.bad(f"501 5.5.4 {exc}")
            return
        if params:
            await self.bad(f"555 5.5.4 unsupported parameter {next(iter(params))}")
            return
        if len(self.txn.rcpts) >= self.s.max_recipients:
            await self.reply("452 4.5.3 too many recipients")
            return
        try:
            local, domain, detail = split_address(address, self.s.recipient_delimiter)
        except InvalidName:
            await self.bad("501 5.1.3 bad recipient address syntax")
            return
        user = f"{local}@{domain}"
        try:
            known = await asyncio.to_thread(self.ctx.users.exists, user)
        except Exception:
            log.exception("user lookup failed")
            await self.reply("451 4.3.0 user lookup failed, try again later")
            return
        if not known:
            await self.reply(f"550 5.1.1 <{address}> user unknown")
            return
        self.txn.rcpts.append((address, user, detail))
        await self.reply("250 2.1.5 recipient ok")

    async def do_data(self, arg: str) -> None:
        if arg:
            await self.bad("501 5.5.4 DATA takes no argument")
            return
        if self.txn is None:
            await self.bad("503 5.5.1 need MAIL before DATA")
            return
        if not self.txn.rcpts:
            await self.bad("503 5.5.1 no valid recipients")
            return
        txn, self.txn = self.txn, None
        await self.reply("354 2.0.0 go ahead, end with <CRLF>.<CRLF>")
        await self.writer.drain()
        data, too_big = await self.inp.data(self.s.max_message_size)
        if data is None:
            log.info("client went away during DATA; nothing stored")
            return
        if too_big:
            refused = [f"552 5.3.4 <{a}> message too big (limit {self.s.max_message_size} bytes)"
                       for a, _u, _d in txn.rcpts]
            metrics.lmtp_replies(refused)
            await self.reply(*refused)
            return
        started = time.monotonic()
        try:
            replies = await asyncio.to_thread(_deliver_all, self.ctx.store, data, txn.sender or "", txn.rcpts,
                                              self.s.lmtp_dedup, self.s.lmtp_detail_folders)
        except Exception:
            log.exception("delivery failed")
            replies = [f"451 4.3.0 <{a}> local error, try again later" for a, _u, _d in txn.rcpts]
        log.debug("delivered %d bytes to %d recipients in %.3fs", len(data), len(txn.rcpts),
                  time.monotonic() - started)
        metrics.lmtp_replies(replies)
        await self.reply(*replies)

    async def do_bdat(self, arg: str) -> None:
        await self.bad("502 5.5.1 BDAT not supported")

    async def do_rset(self, arg: str) -> None:
        self.txn = None
        await self.reply("250 2.0.0 ok")

    async def do_noop(self, arg: str) -> None:
        await self.reply("250 2.0.0 ok")

    async def do_vrfy(self, arg: str) -> None:
        await self.reply("252 2.5.0 cannot verify, but will try delivery")

    async def do_help(self, arg: str) -> None:
        await self.reply("214 2.0.0 LHLO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT (RFC 2033)")

    async def do_quit(self, arg: str) -> bool:
        await self.reply(f"221 2.0.0 {self.hostname} closing")
        return False


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
    """The server's entry point for one LMTP connection."""
    await LMTPSession(reader, writer, ctx).run()
