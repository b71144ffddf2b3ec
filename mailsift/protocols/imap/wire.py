"""The client's side of an IMAP connection: whole commands off the wire, within bounds.

`WireReader.command` reads one command line and the literals it announces (RFC 3501 4.3,
LITERAL+ RFC 7888), inlined into one byte string for parser.parse_command, within the sizes of
parser.Limits:
- before login only small literals and commands (`max_prelogin_*`): a client that has not
  logged in announcing a big literal is refused without a continuation and disconnected;
- a synchronizing literal past its limit is refused (BAD [TOOBIG]) before the client sends it;
  a non-synchronizing one is read and thrown away (the session goes on), or, past twice the
  command limit, ends the connection;
- every wait for the client is bounded: by the idle timeout, and before login by a deadline
  that traffic does not restart (`deadline`).

After COMPRESS DEFLATE the reader inflates what it reads (`inflate`); after STARTTLS nothing
the client sent in the clear survives (`forget_buffered`).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable, Protocol

from mailsift.protocols.imap.compress import DeflateReader
from mailsift.protocols.imap.parser import Limits, literal_marker, split_tag

READ_CHUNK = 65536


class Source(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class LineTooLong(Exception):
    pass


class Closed(Exception):
    """The client went away."""


class CommandTooBig(Exception):
    def __init__(self, tag: bytes | None, fatal: bool) -> None:
        super().__init__("command too big")
        self.tag = tag
        self.fatal = fatal


class WireReader:
    """Lines, literals and whole commands from a StreamReader with our own bounded buffer."""

    def __init__(self, reader: Source, limits: Limits, idle_timeout: float) -> None:
        self.reader: Source = reader
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.buf = bytearray()
        self.deadline: float | None = None  # loop time no read may pass (before login)

    async def _fill(self, timeout: float | None) -> None:
        when = asyncio.get_running_loop().time() + (self.idle_timeout if timeout is None else timeout)
        async with asyncio.timeout_at(when if self.deadline is None else min(when, self.deadline)):
            data = await self.reader.read(READ_CHUNK)
        if not data:
            raise Closed()
        self.buf += data

    async def line(self, max_len: int | None = None, timeout: float | None = None) -> bytes:
        """One line without its CRLF (or LF). Raises LineTooLong (after discarding it)."""
        if max_len is None:
            max_len = self.limits.max_line
        discarding = False
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                if discarding:
                    del self.buf[:i + 1]
                    raise LineTooLong()
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                if line.endswith(b"\r"):
                    line = line[:-1]
                if len(line) > max_len:
                    raise LineTooLong()
                return line
            if len(self.buf) > max_len:
                discarding = True
                self.buf.clear()
            await self._fill(timeout)

    async def exactly(self, n: int, timeout: float | None = None) -> bytes:
        while len(self.buf) < n:
            await self._fill(timeout)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def discard(self, n: int, timeout: float | None = None) -> None:
        while n > 0:
            if not self.buf:
                await self._fill(timeout)
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k

    async def command(self, prelogin: bool, ready: Callable[[], Awaitable[None]]) -> bytes:
        """One whole command, its literals inlined (`{n}\\r\\n` + the n bytes); `ready` sends the
        continuation a synchronizing literal waits for. Raises LineTooLong, CommandTooBig,
        TimeoutError, Closed."""
        limits = self.limits
        line = await self.line(limits.max_line)
        pieces = [line]
        total = len(line)
        while True:
            marker = literal_marker(line)
            if marker is None:
                return b"".join(pieces)
            n, nonsync = marker
            max_literal = (limits.max_prelogin_literal if prelogin else
                           limits.max_nonsync_literal if nonsync else limits.max_literal)
            max_command = limits.max_prelogin_command if prelogin else limits.max_command
            if n > max_literal or total + n > max_command:
                tag, _ = split_tag(pieces[0])
                if nonsync:
                    if prelogin or n > 2 * limits.max_command:
                        raise CommandTooBig(tag, fatal=True)
                    await self.discard(n)
                    await self.line(limits.max_line)  # the rest of the command
                raise CommandTooBig(tag, fatal=False)
            if not nonsync:
                await ready()
            data = await self.exactly(n)
            line = await self.line(limits.max_line)
            pieces += [b"\r\n", data, line]
            total += n + len(line)

    def inflate(self) -> None:
        """COMPRESS DEFLATE is active: what the client sent after the command (already
        buffered) and everything after it is DEFLATE data."""
        pending = bytes(self.buf)
        self.buf.clear()
        self.reader = DeflateReader(self.reader, pending)  # type: ignore[arg-type]

    def forget_buffered(self) -> None:
        """STARTTLS: nothing the client sent in the clear after it may count as sent over TLS,
        neither in our buffer nor in the StreamReader's."""
        self.buf.clear()
        buffered = getattr(self.reader, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
