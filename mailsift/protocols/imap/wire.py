"""The client's side of an IMAP connection: whole commands off the wire, within bounds.

Lines, timeouts and the login deadline are the shared line reader's (protocols/linereader.py).

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

from typing import Awaitable, Callable

from mailsift.protocols.imap.compress import DeflateReader
from mailsift.protocols.imap.parser import Limits, literal_marker, split_tag
from mailsift.protocols.linereader import Closed, LineReader, Source, TooLong

__all__ = ["Closed", "CommandTooBig", "LineTooLong", "WireReader"]


class LineTooLong(Exception):
    pass


class CommandTooBig(Exception):
    def __init__(self, tag: bytes | None, fatal: bool) -> None:
        super().__init__("command too big")
        self.tag = tag
        self.fatal = fatal


class WireReader:
    """Lines, literals and whole commands from a stream, through the shared line reader."""

    def __init__(self, reader: Source, limits: Limits, idle_timeout: float) -> None:
        self.limits = limits
        self.lines = LineReader(reader, limits.max_line, idle_timeout, strip_eol=True)
        self._next_buffered = self.lines.splitter.next_line

    @property
    def deadline(self) -> float | None:
        return self.lines.deadline

    @deadline.setter
    def deadline(self, when: float | None) -> None:
        self.lines.deadline = when

    async def line(self) -> bytes:
        """One line without its CRLF (or LF). Raises LineTooLong (after discarding it), Closed."""
        line = self._next_buffered()  # (perf: most lines are buffered already; no await)
        if line is None:
            line = await self.lines.line()
        if line is None:
            raise Closed()
        if isinstance(line, TooLong):
            raise LineTooLong()
        return line

    async def command(self, prelogin: bool, ready: Callable[[], Awaitable[None]]) -> bytes:
        """One whole command, its literals inlined (`{n}\\r\\n` + the n bytes); `ready` sends the
        continuation a synchronizing literal waits for. Raises LineTooLong, CommandTooBig,
        TimeoutError, Closed."""
        limits, lines = self.limits, self.lines
        line = await self.line()
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
                    await lines.discard(n)
                    await self.line()  # the rest of the command
                raise CommandTooBig(tag, fatal=False)
            if not nonsync:
                await ready()
            data = await lines.exactly(n)
            line = await self.line()
            pieces += [b"\r\n", data, line]
            total += n + len(line)

    def inflate(self) -> None:
        """COMPRESS DEFLATE is active: what the client sent after the command (already
        buffered) and everything after it is DEFLATE data."""
        pending = bytes(self.lines.buf)
        self.lines.clear()
        self.lines.source = DeflateReader(self.lines.source, pending)  # type: ignore[arg-type]

    def forget_buffered(self) -> None:
        """STARTTLS: nothing the client sent in the clear after it may count as sent over TLS,
        neither in our buffer nor in the StreamReader's."""
        self.lines.clear()
        buffered = getattr(self.lines.source, "_buffer", None)
        if isinstance(buffered, bytearray):
            buffered.clear()
