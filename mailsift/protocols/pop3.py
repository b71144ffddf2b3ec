"""POP3 server: RFC 1939 with CAPA and response codes (RFC 2449), AUTH PLAIN (RFC 5034,
RFC 4616), STLS (RFC 2595), PIPELINING.

The module has two halves, in the aiosmtpd manner:

1. **Bytes alone** (no I/O): `parse_command`, `ok`/`err`/`multiline`, `dot_stuff`,
   `top_part` (`to_crlf` is the store's, `decode_plain` mailsift/protocols/sasl.py's, shared
   with IMAP; lines are read by mailsift/protocols/linereader.py, shared with LMTP and IMAP).
   Tested on bytes.
2. **The session** (`Pop3Session`): the AUTHORIZATION -> TRANSACTION -> UPDATE state machine
   over asyncio streams and a `Maildrop` (a snapshot of the user's INBOX taken at login,
   built on the store API). `handle(reader, writer, ctx)` is what `mailsift serve` calls.

Deletions are only marks until QUIT, which expunges them through the store API; a
connection that drops without QUIT deletes nothing. One session per mailbox at a time
(`-ERR [IN-USE]`). UIDL is the message's Maildir base name, which survives restarts and
even a rebuilt index, so "leave mail on server" clients never fetch a message twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from mailsift.ops import metrics
from mailsift.protocols.linereader import TOO_LONG, LineReader
from mailsift.protocols.sasl import SaslError, decode_plain  # noqa: F401  (tests import them here)
from mailsift.serve.context import SessionContext
from mailsift.store.api import Mailbox, MessageInfo
from mailsift.store.maildir import to_crlf
from mailsift.store.auth import Authenticator, plaintext_allowed, throttle_for

log = logging.getLogger("mailsift.pop3")

# RFC 2449 allows 255 octets per command line; we accept a little more (long user names,
# AUTH PLAIN initial responses) and refuse anything beyond with a clear -ERR.
MAX_LINE = 1024

CRLF = b"\r\n"


class CommandError(Exception):
    """A line that is not a POP3 command; str(exc) is the text for the -ERR reply."""


@dataclass(frozen=True)
class Command:
    verb: str               # upper case, e.g. "RETR"
    args: tuple[str, ...]   # split on spaces
    rest: str               # everything after "VERB " (PASS takes it whole: passwords may hold spaces)


def parse_command(line: bytes) -> Command:
    """Parse one command line (with or without its CRLF). Raises CommandError."""
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    if b"\0" in line:
        raise CommandError("NUL byte in command")
    if b"\r" in line or b"\n" in line:
        raise CommandError("bare CR in command")
    if not line.strip():
        raise CommandError("empty command")
    verb_b, sep, rest_b = line.partition(b" ")
    if not (3 <= len(verb_b) <= 4) or not verb_b.isalpha() or not verb_b.isascii():
        raise CommandError("unknown command")
    try:
        rest = rest_b.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("invalid UTF-8 in command") from None
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in rest):
        raise CommandError("control characters in command")
    return Command(verb_b.decode("ascii").upper(), tuple(rest.split()), rest)


def parse_number(text: str, what: str = "message number", zero_ok: bool = False) -> int:
    """A decimal argument: digits only, no sign, bounded. Raises CommandError."""
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        raise CommandError(f"invalid {what}")
    n = int(text)
    if n == 0 and not zero_ok:
        raise CommandError(f"invalid {what}")
    return n


def ok(text: str = "") -> bytes:
    return b"+OK" + ((" " + text).encode("utf-8") if text else b"") + CRLF


def err(text: str, code: str | None = None) -> bytes:
    """-ERR with an optional RFC 2449/3206 response code: err("locked", "IN-USE")."""
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}".encode("utf-8") + CRLF


def multiline(lines: list[str]) -> bytes:
    """The body of a multi-line reply of short text lines, dot-stuffed, with its terminator."""
    out = []
    for line in lines:
        data = line.encode("utf-8")
        out.append(b"." + data if data.startswith(b".") else data)
    out.append(b".")
    return CRLF.join(out) + CRLF


def dot_stuff_parts(crlf_data: bytes) -> tuple[bytes, bytes]:
    """(the data with lines that start with '.' byte-stuffed, what ends it: the last line's
    CRLF if missing and the '.' line). Two pieces, so that a big message is not copied once
    more only to append five bytes (they go out in one writelines)."""
    if crlf_data.startswith(b"."):
        crlf_data = b"." + crlf_data
    if b"\n." in crlf_data:
        crlf_data = crlf_data.replace(b"\r\n.", b"\r\n..")
    if crlf_data and not crlf_data.endswith(b"\r\n"):
        return crlf_data, b"\r\n.\r\n"
    return crlf_data, b".\r\n"


def dot_stuff(crlf_data: bytes) -> bytes:
    """Byte-stuff lines that start with '.', end the last line, append the '.' line."""
    body, end = dot_stuff_parts(crlf_data)
    return body + end


def top_part(crlf_data: bytes, body_lines: int) -> bytes:
    """The header, the blank line after it, and the first `body_lines` lines of the body."""
    if crlf_data.startswith(b"\r\n"):
        pos = 2  # no header at all: the message starts with the blank line
    else:
        end = crlf_data.find(b"\r\n\r\n")
        if end < 0:
            return crlf_data  # all header, no body
        pos = end + 4
    for _ in range(body_lines):
        nl = crlf_data.find(b"\r\n", pos)
        if nl < 0:
            return crlf_data
        pos = nl + 2
    return crlf_data[:pos]


_UIDL_RE = re.compile(r"[\x21-\x7e]{1,70}\Z")


def valid_uidl(uid: str) -> bool:
    """RFC 1939: 1 to 70 characters in the range 0x21 to 0x7E."""
    return _UIDL_RE.match(uid) is not None


# ------------------------------------------------------------------------------------------
# The session
# ------------------------------------------------------------------------------------------

IDLE_TIMEOUT = 600.0        # RFC 1939 autologout: at least 10 minutes
LOGIN_TIMEOUT = 120.0       # from connecting to logging in, whatever is sent ([store] login_timeout)
MAX_BAD_COMMANDS = 20       # then the connection is closed
MAX_AUTH_FAILURES = 3       # per connection, then closed (the throttle spans connections)
READ_CHUNK = 65536
WRITE_HIGH_WATER = 1 << 20  # drain when this much is waiting

GREETING = "mailsift POP3 server ready"


class MaildropError(Exception):
    """The store could not serve the request; the client gets -ERR [SYS/TEMP]."""


@dataclass
class DropMessage:
    """One message of the snapshot taken at login."""
    ref: Any        # what the Maildrop needs to read or expunge it (the store's UID)
    uidl: str       # stable unique id (RFC 1939: 0x21..0x7E, at most 70)
    size: int       # octets with CRLF line ends, before dot-stuffing
    deleted: bool = False


class Maildrop:
    """The user's INBOX as POP3 sees it. Subclasses adapt the store API; see `StoreMaildrop`."""

    messages: list[DropMessage]

    async def read(self, msg: DropMessage) -> bytes:
        """The message with CRLF line ends (`msg.size` octets). Raises MessageGone."""
        raise NotImplementedError

    async def expunge(self, msgs: list[DropMessage]) -> None:
        raise NotImplementedError

    def retrieved(self, msg: DropMessage) -> None:
        """RETR (not TOP) sent this message; `mark_seen` flags such messages at QUIT."""

    async def mark_seen(self) -> None:
        pass

    def close(self) -> None:
        pass


class MessageGone(Exception):
    """The message was removed (by IMAP, mutt, ...) after the snapshot was taken."""


IN_USE_KEY = "pop3.in_use"  # in SessionContext.shared


def _in_use(ctx: SessionContext) -> set[str]:
    """Mailboxes with an open POP3 session in this server (`mailsift serve` is one process)."""
    in_use: set[str] = ctx.shared.setdefault(IN_USE_KEY, set())
    return in_use


def uidl_for(key: str) -> str:
    """The UIDL of a message: its Maildir base name (stable across sessions, restarts and index
    rebuilds), or a digest of it when the name is not a valid UIDL (too long, odd characters)."""
    if valid_uidl(key):
        return key
    return hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()


def canonical_user(ctx: SessionContext, user: str) -> str:
    try:
        return ctx.users.canonical(user)
    except ValueError:
        return user.strip().lower()


OpenMaildrop = Callable[[SessionContext, str], Awaitable[Maildrop]]


class StoreMaildrop(Maildrop):
    """The INBOX of one user through the store API (blocking calls run in worker threads)."""

    FOLDER = "INBOX"

    def __init__(self, box: Mailbox, infos: list[MessageInfo], paths: dict[int, str] | None = None) -> None:
        self.box = box
        self.messages = [DropMessage(ref=m.uid, uidl=uidl_for(m.key), size=m.size) for m in infos]
        self._retrieved: set[int] = set()
        self._paths = paths or {}  # uid -> its file when the snapshot was taken (a hint)
        self._dirs: dict[str, int] = {}  # descriptors of the directories those files are in

    # Smaller messages are read in the event loop: from the page cache that takes ~0.1 ms,
    # less than the hop to a worker thread costs; bigger ones go to a thread.
    INLINE_READ = 256 * 1024

    async def read(self, msg: DropMessage) -> bytes:
        from mailsift.store.api import NoSuchMessage

        try:
            if msg.size <= self.INLINE_READ:
                data = self._read_hinted(msg)
                if data is None:
                    data = self.box.read(self.FOLDER, msg.ref)
            else:
                data = await asyncio.to_thread(self.box.read, self.FOLDER, msg.ref)
        except (NoSuchMessage, FileNotFoundError):
            raise MessageGone() from None
        return data

    def _read_hinted(self, msg: DropMessage) -> bytes | None:
        """The message read from where the snapshot found its file, in three system calls
        (open relative to its directory, one read, close; perf: a store read looks the path up
        in the index, walks the whole path and makes seven system calls); None when that file
        is gone (renamed by a flag change, or expunged) or did not hold `msg.size` octets once
        in CRLF (a short read, an outside edit): then the store reads it."""
        path = self._paths.get(msg.ref)
        if path is None:
            return None
        folder_dir, _, name = path.rpartition("/")
        dir_fd = self._dirs.get(folder_dir)
        try:
            if dir_fd is None:
                dir_fd = self._dirs[folder_dir] = os.open(folder_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        try:
            raw = os.read(fd, msg.size + 1)  # a file in LF is shorter than msg.size, never longer
        finally:
            os.close(fd)
        data = to_crlf(raw)
        return data if len(data) == msg.size else None

    def retrieved(self, msg: DropMessage) -> None:
        self._retrieved.add(msg.ref)

    def close(self) -> None:
        dirs, self._dirs = self._dirs, {}
        for fd in dirs.values():
            os.close(fd)

    async def expunge(self, msgs: list[DropMessage]) -> None:
        uids = [m.ref for m in msgs]

        def update() -> None:
            self.box.store_flags(self.FOLDER, uids, {"\\Deleted"}, "add")
            self.box.expunge(self.FOLDER, uids)

        await asyncio.to_thread(update)

    async def mark_seen(self) -> None:
        """Messages sent by RETR get \\Seen, as Dovecot does (best effort). TOP leaves them
        alone: fetchmail's "keep" mode reads with TOP precisely so that nothing changes."""
        uids = sorted(self._retrieved)
        if uids:
            await asyncio.to_thread(self.box.store_flags, self.FOLDER, uids, {"\\Seen"}, "add")


async def open_store_maildrop(ctx: SessionContext, user: str) -> Maildrop:
    def load() -> tuple[Mailbox, list[MessageInfo], dict[int, str]]:
        box = ctx.store.mailbox(user)
        infos = box.list(StoreMaildrop.FOLDER)
        return box, infos, box.file_paths(StoreMaildrop.FOLDER, [m.uid for m in infos])

    box, infos, paths = await asyncio.to_thread(load)
    return StoreMaildrop(box, infos, paths)


def _peer_address(ctx: SessionContext) -> str:
    peer = ctx.peer
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return str(peer) if peer else "unknown"


class Pop3Session:
    """One POP3 connection. States: AUTHORIZATION, TRANSACTION, then closed."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext,
                 open_maildrop: OpenMaildrop | None = None) -> None:
        self.reader = reader
        self.writer = writer
        self.ctx = ctx
        self.settings = ctx.settings
        self.tls: ssl.SSLContext | None = ctx.tls
        self.secure = ctx.implicit_tls
        self.is_loopback = ctx.is_loopback
        self.address = _peer_address(ctx)
        self.auth = Authenticator(ctx.users, throttle_for(ctx))
        self._open_maildrop = open_maildrop or open_store_maildrop
        self.inp = LineReader(reader, MAX_LINE, IDLE_TIMEOUT, chunk=READ_CHUNK)
        self.state = "AUTHORIZATION"
        self.user: str | None = None          # from USER, waiting for PASS
        self.mailbox: str | None = None       # canonical name, held in _in_use
        self.drop: Maildrop | None = None
        self.sasl_pending = False
        self.bad_commands = 0
        self.auth_failures = 0
        self.closing = False
        # set when run() starts, never restarted by traffic: a client trickling bytes cannot
        # hold an unauthenticated connection
        self.login_deadline = 0.0

    # -- I/O ---------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def flush(self) -> None:
        await self.writer.drain()

    async def run(self) -> None:
        self.login_deadline = asyncio.get_running_loop().time() + float(
            self.settings.login_timeout)
        self.write(ok(GREETING))
        try:
            while not self.closing:
                if not self.inp.buffered():
                    await self.flush()
                preauth = self.state == "AUTHORIZATION"
                self.inp.deadline = self.login_deadline if preauth else None
                try:
                    line = await self.inp.line()
                except TimeoutError:
                    self.write(err("autologout: no login in time" if preauth else "autologout: idle for too long"))
                    break
                if line is None:
                    break
                if line is TOO_LONG:
                    self.sasl_pending = False
                    self.bad("line too long")
                    continue
                assert isinstance(line, bytes)
                await self.dispatch(line)
                if self.writer.transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                    await self.flush()
            await self.flush()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("pop3 connection from %s ended: %r", self.address, exc)
        finally:
            self.release()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - the transport may already be gone
                pass

    def release(self) -> None:
        """Close the maildrop and free the mailbox (deletes are only applied by QUIT)."""
        if self.drop is not None:
            try:
                self.drop.close()
            except Exception:  # noqa: BLE001
                log.exception("closing maildrop of %s", self.mailbox)
            self.drop = None
        if self.mailbox is not None:
            _in_use(self.ctx).discard(self.mailbox)
            self.mailbox = None

    def bad(self, text: str) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.write(err(f"{text}; too many bad commands, closing"))
            self.closing = True
        else:
            self.write(err(text))

    # -- dispatch ----------------------------------------------------------------------------
    async def dispatch(self, line: bytes) -> None:
        if self.sasl_pending:
            self.sasl_pending = False
            await self.sasl_response(line)
            return
        try:
            cmd = parse_command(line)
        except CommandError as exc:
            self.bad(str(exc))
            return
        table = _AUTH_COMMANDS if self.state == "AUTHORIZATION" else _TRANS_COMMANDS
        method = table.get(cmd.verb)
        if method is None:
            other = _TRANS_COMMANDS if self.state == "AUTHORIZATION" else _AUTH_COMMANDS
            if cmd.verb in other:
                self.bad(f"{cmd.verb} not allowed in the {self.state} state")
            else:
                self.bad("unknown command")
            return
        try:
            await method(self, cmd)
        except CommandError as exc:
            self.bad(str(exc))
        except MaildropError as exc:
            self.write(err(str(exc), "SYS/TEMP"))
        except (ConnectionError, ssl.SSLError):
            raise
        except Exception:  # our fault: a temporary error, never a crash
            log.exception("pop3 %s failed for %s", cmd.verb, self.mailbox or self.address)
            self.write(err("internal error, try again later", "SYS/TEMP"))

    # -- capabilities ------------------------------------------------------------------------
    def plaintext_ok(self) -> bool:
        anywhere = self.settings.allow_plaintext_anywhere
        return plaintext_allowed(self.secure, self.is_loopback, anywhere)

    def capabilities(self) -> list[str]:
        caps = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state == "AUTHORIZATION":
            if self.plaintext_ok():
                caps += ["USER", "SASL PLAIN"]
            if self.tls is not None and not self.secure:
                caps.append("STLS")
        caps += ["EXPIRE NEVER", "IMPLEMENTATION mailsift"]
        return caps

    async def cmd_capa(self, cmd: Command) -> None:
        self.write(ok("Capability list follows") + multiline(self.capabilities()))

    async def cmd_noop(self, cmd: Command) -> None:
        self.write(ok())

    async def cmd_quit(self, cmd: Command) -> None:
        self.closing = True
        if self.state == "AUTHORIZATION":
            self.write(ok("mailsift POP3 server signing off"))
            return
        assert self.drop is not None
        doomed = [m for m in self.drop.messages if m.deleted]
        if doomed:
            try:
                await self.drop.expunge(doomed)
            except MaildropError as exc:
                self.write(err(f"some deleted messages not removed: {exc}", "SYS/TEMP"))
                return
            except Exception:
                log.exception("expunge failed for %s", self.mailbox)
                self.write(err("some deleted messages not removed", "SYS/TEMP"))
                return
        try:
            await self.drop.mark_seen()
        except Exception:  # noqa: BLE001 - flags are a courtesy; the deletes are done
            log.exception("marking retrieved messages seen failed for %s", self.mailbox)
        left = sum(1 for m in self.drop.messages if not m.deleted)
        self.write(ok(f"mailsift POP3 server signing off ({len(doomed)} deleted, {left} left)"))

    # -- AUTHORIZATION -----------------------------------------------------------------------
    async def cmd_stls(self, cmd: Command) -> None:
        if cmd.args:
            raise CommandError("STLS takes no arguments")
        if self.secure:
            self.write(err("already using TLS"))
            return
        if self.tls is None:
            self.write(err("TLS not available"))
            return
        self.write(ok("Begin TLS negotiation"))
        # Nothing the client sent in the clear after STLS may be read as if it came over TLS.
        self.inp.clear()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
        await self.writer.start_tls(self.tls)
        self.secure = True
        self.user = None

    async def cmd_user(self, cmd: Command) -> None:
        if not self.plaintext_ok():
            self.write(err("plaintext authentication disallowed on non-secure connections; use STLS", "AUTH"))
            return
        if not cmd.rest.strip():
            raise CommandError("USER needs a name")
        self.user = cmd.rest.strip()
        self.write(ok("send PASS"))  # the same words for every name: existence is not revealed

    async def cmd_pass(self, cmd: Command) -> None:
        if not self.plaintext_ok():
            self.write(err("plaintext authentication disallowed on non-secure connections; use STLS", "AUTH"))
            return
        if self.user is None:
            self.write(err("USER first"))
            return
        user, self.user = self.user, None
        await self.login(user, cmd.rest)

    async def cmd_auth(self, cmd: Command) -> None:
        if not cmd.args:
            self.write(ok("Supported mechanisms follow") + multiline(["PLAIN"]))
            return
        if cmd.args[0].upper() != "PLAIN":
            self.write(err("unsupported authentication mechanism"))
            return
        if not self.plaintext_ok():
            self.write(err("plaintext authentication disallowed on non-secure connections; use STLS", "AUTH"))
            return
        if len(cmd.args) > 2:
            raise CommandError("AUTH PLAIN takes one initial response")
        if len(cmd.args) == 2:
            await self.sasl_plain(cmd.args[1])
        else:
            self.sasl_pending = True
            self.write(b"+ \r\n")

    async def sasl_response(self, line: bytes) -> None:
        text = line.rstrip(b"\r\n")
        if text == b"*":
            self.write(err("authentication cancelled"))
            return
        try:
            await self.sasl_plain(text.decode("ascii"))
        except UnicodeDecodeError:
            self.write(err("invalid base64 in PLAIN response"))

    async def sasl_plain(self, response: str) -> None:
        try:
            authzid, authcid, passwd = decode_plain(response)
        except SaslError as exc:
            self.write(err(str(exc)))
            return
        if authzid and authzid != authcid:
            await self.auth.refuse(self.address, authcid)  # no proxy logins
            self.login_failed()
            return
        await self.login(authcid, passwd)

    def login_failed(self) -> None:
        self.auth_failures += 1
        metrics.login(self.ctx.protocol, False)
        if self.auth_failures >= MAX_AUTH_FAILURES:
            self.write(err("authentication failed; closing", "AUTH"))
            self.closing = True
        else:
            self.write(err("authentication failed", "AUTH"))

    async def login(self, user: str, password: str) -> None:
        try:
            good = await self.auth.login(self.address, user, password)
        except Exception:
            log.exception("users database failed")
            self.write(err("authentication temporarily unavailable", "SYS/TEMP"))
            return
        if not good:
            self.login_failed()
            return
        metrics.login(self.ctx.protocol, True)
        mailbox = canonical_user(self.ctx, user)
        in_use = _in_use(self.ctx)
        if mailbox in in_use:
            self.write(err("mailbox is locked by another POP3 session", "IN-USE"))
            return
        in_use.add(mailbox)
        self.mailbox = mailbox
        try:
            self.drop = await self._open_maildrop(self.ctx, mailbox)
        except Exception as exc:
            self.release()
            if not isinstance(exc, MaildropError):
                log.exception("opening the maildrop of %s failed", mailbox)
            self.write(err("mailbox unavailable, try again later", "SYS/TEMP"))
            return
        self.state = "TRANSACTION"
        log.info("pop3 login %s from %s (%d messages)", mailbox, self.address, len(self.drop.messages))
        n, size = self.totals()
        self.write(ok(f"maildrop has {n} messages ({size} octets)"))

    # -- TRANSACTION -------------------------------------------------------------------------
    def totals(self) -> tuple[int, int]:
        assert self.drop is not None
        live = [m for m in self.drop.messages if not m.deleted]
        return len(live), sum(m.size for m in live)

    def message(self, arg: str) -> DropMessage | None:
        """The live message numbered `arg` (writes the -ERR and returns None otherwise)."""
        assert self.drop is not None
        n = parse_number(arg)
        if n > len(self.drop.messages):
            self.write(err(f"no such message, only {len(self.drop.messages)} in maildrop"))
            return None
        msg = self.drop.messages[n - 1]
        if msg.deleted:
            self.write(err(f"message {n} already deleted"))
            return None
        return msg

    async def cmd_stat(self, cmd: Command) -> None:
        if cmd.args:
            raise CommandError("STAT takes no arguments")
        n, size = self.totals()
        self.write(ok(f"{n} {size}"))

    async def cmd_list(self, cmd: Command) -> None:
        await self._listing(cmd, lambda m: str(m.size))

    async def cmd_uidl(self, cmd: Command) -> None:
        await self._listing(cmd, lambda m: m.uidl)

    async def _listing(self, cmd: Command, value: Any) -> None:
        assert self.drop is not None
        if len(cmd.args) > 1:
            raise CommandError(f"{cmd.verb} takes at most one argument")
        if cmd.args:
            msg = self.message(cmd.args[0])
            if msg is not None:
                self.write(ok(f"{parse_number(cmd.args[0])} {value(msg)}"))
            return
        lines = [f"{i} {value(m)}" for i, m in enumerate(self.drop.messages, 1) if not m.deleted]
        if cmd.verb == "LIST":
            n, size = self.totals()
            self.write(ok(f"{n} messages ({size} octets)") + multiline(lines))
        else:
            self.write(ok() + multiline(lines))

    async def cmd_retr(self, cmd: Command) -> None:
        if len(cmd.args) != 1:
            raise CommandError("RETR needs one message number")
        msg = self.message(cmd.args[0])
        if msg is None:
            return
        data = await self._read(msg)
        if data is None:
            return
        body, end = dot_stuff_parts(data)
        self.writer.writelines((ok(f"{msg.size} octets"), body, end))  # one system call
        self.drop.retrieved(msg)  # type: ignore[union-attr]

    async def cmd_top(self, cmd: Command) -> None:
        if len(cmd.args) != 2:
            raise CommandError("TOP needs a message number and a line count")
        msg = self.message(cmd.args[0])
        if msg is None:
            return
        lines = parse_number(cmd.args[1], "line count", zero_ok=True)
        data = await self._read(msg)
        if data is None:
            return
        body, end = dot_stuff_parts(top_part(data, lines))
        self.writer.writelines((ok("top of message follows"), body, end))

    async def _read(self, msg: DropMessage) -> bytes | None:
        assert self.drop is not None
        try:
            return await self.drop.read(msg)
        except MessageGone:
            self.write(err("message was removed by another client"))
            return None

    async def cmd_dele(self, cmd: Command) -> None:
        if len(cmd.args) != 1:
            raise CommandError("DELE needs one message number")
        msg = self.message(cmd.args[0])
        if msg is None:
            return
        msg.deleted = True
        self.write(ok(f"message {parse_number(cmd.args[0])} deleted"))

    async def cmd_rset(self, cmd: Command) -> None:
        if cmd.args:
            raise CommandError("RSET takes no arguments")
        assert self.drop is not None
        for m in self.drop.messages:
            m.deleted = False
        n, size = self.totals()
        self.write(ok(f"maildrop has {n} messages ({size} octets)"))


_AUTH_COMMANDS = {
    "CAPA": Pop3Session.cmd_capa,
    "USER": Pop3Session.cmd_user,
    "PASS": Pop3Session.cmd_pass,
    "AUTH": Pop3Session.cmd_auth,
    "STLS": Pop3Session.cmd_stls,
    "QUIT": Pop3Session.cmd_quit,
}
_TRANS_COMMANDS = {
    "CAPA": Pop3Session.cmd_capa,
    "STAT": Pop3Session.cmd_stat,
    "LIST": Pop3Session.cmd_list,
    "UIDL": Pop3Session.cmd_uidl,
    "RETR": Pop3Session.cmd_retr,
    "TOP": Pop3Session.cmd_top,
    "DELE": Pop3Session.cmd_dele,
    "RSET": Pop3Session.cmd_rset,
    "NOOP": Pop3Session.cmd_noop,
    "QUIT": Pop3Session.cmd_quit,
}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
    """The `mailsift serve` entry point for the pop3 and pop3s listeners."""
    await Pop3Session(reader, writer, ctx).run()
