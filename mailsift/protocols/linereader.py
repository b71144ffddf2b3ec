"""The one line reader of the store's protocols: LMTP, POP3 and IMAP read their clients with it.

- `LineSplitter` (bytes alone, no I/O) splits a byte stream into lines ending in LF (CRLF or a
  bare LF). A line longer than `max_line` is thrown away as it arrives, so memory stays bounded
  whatever the client sends, and is reported once, as TOO_LONG, when its end is seen. With
  `strip_eol` the lines come without their CRLF (or LF) and the limit counts the line alone
  (IMAP's `max_line`); without it they keep it and the limit counts it (LMTP, POP3).
- `LineReader` feeds a splitter from a stream (a StreamReader, or anything with `read(n)`, such
  as IMAP's DEFLATE reader). Every wait for the client is bounded by `idle_timeout`, and by
  `deadline` (loop time) when set: a deadline that traffic does not restart (POP3 and IMAP
  before login). A wait past either raises TimeoutError; each protocol answers it its own way.
  Exact byte counts (IMAP literals, LMTP DATA) are read from the same buffer.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

READ_CHUNK = 65536


class Source(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


class TooLong:
    """Marker for a line that exceeded the limit (already discarded)."""

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG = TooLong()


class Closed(Exception):
    """The client went away in the middle of what it was sending."""


class LineSplitter:
    """Lines out of a byte stream, each at most `max_line` bytes (see the module's docstring)."""

    def __init__(self, max_line: int, strip_eol: bool = False) -> None:
        self.max_line = max_line
        self.strip_eol = strip_eol
        self.buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> None:
        self.buf += data

    def has_line(self) -> bool:
        return b"\n" in self.buf

    def clear(self) -> None:
        """Forget everything buffered (after STARTTLS/STLS: nothing sent in the clear may survive)."""
        self.buf.clear()
        self._discarding = False

    def next_line(self) -> bytes | TooLong | None:
        """The next whole line, TOO_LONG for one past the limit, None until a line is whole."""
        buf = self.buf
        i = buf.find(b"\n")
        if self._discarding:
            if i < 0:
                buf.clear()
                return None
            del buf[:i + 1]
            self._discarding = False
            return TOO_LONG
        if i < 0:
            if len(buf) > self.max_line:
                buf.clear()
                self._discarding = True
            return None
        if self.strip_eol:
            line = bytes(buf[:i - 1 if i and buf[i - 1] == 13 else i])
            del buf[:i + 1]
            return TOO_LONG if len(line) > self.max_line else line
        if i + 1 > self.max_line:
            del buf[:i + 1]
            return TOO_LONG
        line = bytes(buf[:i + 1])
        del buf[:i + 1]
        return line


class LineReader:
    """Lines and exact byte counts from a stream, through one bounded buffer."""

    def __init__(self, source: Source, max_line: int, idle_timeout: float, strip_eol: bool = False,
                 chunk: int = READ_CHUNK) -> None:
        self.source = source
        self.idle_timeout = idle_timeout
        self.chunk = chunk
        self.splitter = LineSplitter(max_line, strip_eol)
        self.deadline: float | None = None  # loop time no wait may pass; None: only idle_timeout
        self._expired = False                # the bound of the wait in progress has passed

    @property
    def buf(self) -> bytearray:
        """What was read and not consumed yet."""
        return self.splitter.buf

    def buffered(self) -> bool:
        """Whether a whole line is waiting (PIPELINING: no need to flush replies before it)."""
        return self.splitter.has_line()

    def clear(self) -> None:
        self.splitter.clear()

    async def fill(self, timeout: float | None = None) -> bool:
        """Read what the client sent next into the buffer; False at the end of the stream.
        Raises TimeoutError past `timeout` (default `idle_timeout`) or the deadline."""
        loop = asyncio.get_running_loop()
        when = loop.time() + (self.idle_timeout if timeout is None else timeout)
        if self.deadline is not None and self.deadline < when:
            when = self.deadline
        task = asyncio.current_task()
        assert task is not None
        # (perf: a bare timer, as asyncio.timeout_at sets, without its Python context object:
        # an IMAP session waits here once per command)
        timer = loop.call_at(when, self._expire, task)
        cancelling = task.cancelling()
        try:
            data = await self.source.read(self.chunk)
        except asyncio.CancelledError:
            # as asyncio.timeout: a TimeoutError when the timer's cancel alone ended the wait
            if self._expired and task.uncancel() <= cancelling:
                raise TimeoutError() from None
            raise
        finally:
            timer.cancel()
            self._expired = False
        if not data:
            return False
        self.splitter.feed(data)
        return True

    def _expire(self, task: asyncio.Task[object]) -> None:
        self._expired = True
        task.cancel()

    async def line(self, timeout: float | None = None) -> bytes | TooLong | None:
        """The next line, TOO_LONG for an over-long one (discarded), None at the end of the stream."""
        while True:
            line = self.splitter.next_line()
            if line is not None:
                return line
            if not await self.fill(timeout):
                return None

    async def exactly(self, n: int, timeout: float | None = None) -> bytes:
        """The next n bytes. Raises Closed at the end of the stream."""
        buf = self.splitter.buf
        while len(buf) < n:
            if not await self.fill(timeout):
                raise Closed()
        out = bytes(buf[:n])
        del buf[:n]
        return out

    async def discard(self, n: int, timeout: float | None = None) -> None:
        """Read and forget the next n bytes. Raises Closed at the end of the stream."""
        buf = self.splitter.buf
        while n > 0:
            if not buf and not await self.fill(timeout):
                raise Closed()
            k = min(n, len(buf))
            del buf[:k]
            n -= k
