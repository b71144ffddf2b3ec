"""The line reader LMTP, POP3 and IMAP share (mailsift/protocols/linereader.py), on bytes and on a
real StreamReader: each protocol's way of counting its line limit, and the bounds on waiting."""

from __future__ import annotations

import asyncio

import pytest

from mailsift.protocols.linereader import TOO_LONG, Closed, LineReader, LineSplitter


def test_keeping_the_eol_counts_it_in_the_limit() -> None:
    """LMTP and POP3: a line comes with its CRLF, and the CRLF counts."""
    s = LineSplitter(8)
    s.feed(b"ABCDEF\r\nABCDEFG\r\nABCDEFG\n")
    assert s.next_line() == b"ABCDEF\r\n"     # 8 bytes with CRLF
    assert s.next_line() is TOO_LONG          # 9
    assert s.next_line() == b"ABCDEFG\n"      # 8 with a bare LF


def test_stripping_the_eol_counts_the_line_alone() -> None:
    """IMAP: a line comes without its CRLF (or LF), and the limit is the line's."""
    s = LineSplitter(8, strip_eol=True)
    s.feed(b"ABCDEFGH\r\nABCDEFGHI\r\nABCDEFGH\n\r\nA\rB\r\n")
    assert s.next_line() == b"ABCDEFGH"
    assert s.next_line() is TOO_LONG
    assert s.next_line() == b"ABCDEFGH"
    assert s.next_line() == b""
    assert s.next_line() == b"A\rB"           # only a CR before the LF is part of the end


def test_a_long_line_is_dropped_as_it_arrives_in_both_modes() -> None:
    for strip in (False, True):
        s = LineSplitter(16, strip_eol=strip)
        for _ in range(100):
            s.feed(b"x" * 1000)
            assert s.next_line() is None
            assert len(s.buf) <= 1000          # never more than the last chunk held
        s.feed(b"\r\nNOOP\r\n")
        assert s.next_line() is TOO_LONG
        assert s.next_line() == (b"NOOP" if strip else b"NOOP\r\n")


def _reader_with(*chunks: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    for c in chunks:
        reader.feed_data(c)
    if eof:
        reader.feed_eof()
    return reader


def test_lines_literals_and_the_end_of_the_stream() -> None:
    async def main() -> None:
        inp = LineReader(_reader_with(b"a {5}\r\nhello", b" rest\r\n", b"tail"), 64, 5.0, strip_eol=True)
        assert await inp.line() == b"a {5}"
        assert await inp.exactly(5) == b"hello"
        assert await inp.line() == b" rest"
        assert await inp.line() is None         # "tail" never ended: the stream did
        inp = LineReader(_reader_with(b"abc"), 64, 5.0)
        with pytest.raises(Closed):
            await inp.exactly(4)
    asyncio.run(main())


def test_a_trickle_does_not_outlive_the_deadline() -> None:
    """The idle timeout restarts with every read; the deadline does not."""
    async def main() -> float:
        reader = _reader_with(eof=False)
        inp = LineReader(reader, 64, idle_timeout=5.0)
        loop = asyncio.get_running_loop()
        start = loop.time()
        inp.deadline = start + 0.6

        async def trickle() -> None:
            while True:
                await asyncio.sleep(0.1)
                reader.feed_data(b"x")
        feeder = asyncio.ensure_future(trickle())
        try:
            with pytest.raises(TimeoutError):
                await inp.line()
        finally:
            feeder.cancel()
        return loop.time() - start
    took = asyncio.run(main())
    assert 0.5 <= took < 2.0, took


def test_the_idle_timeout_bounds_each_wait() -> None:
    async def main() -> float:
        inp = LineReader(_reader_with(eof=False), 64, idle_timeout=0.3)
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await inp.line()
        return loop.time() - start
    took = asyncio.run(main())
    assert 0.25 <= took < 2.0, took


def test_a_timeout_leaves_the_task_usable_and_a_cancel_stays_a_cancel() -> None:
    """The bound on a wait cancels only the wait: after a TimeoutError the task awaits on
    normally, and a cancel from outside (the server stopping) is a CancelledError, not a
    timeout."""
    async def main() -> None:
        reader = _reader_with(eof=False)
        inp = LineReader(reader, 64, idle_timeout=0.2)
        with pytest.raises(TimeoutError):
            await inp.line()
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0
        await asyncio.sleep(0.3)                 # not cancelled by a leftover of the timeout
        reader.feed_data(b"NOOP\r\n")
        assert await inp.line() == b"NOOP\r\n"

        waiting = asyncio.ensure_future(LineReader(_reader_with(eof=False), 64, idle_timeout=5.0).line())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    asyncio.run(main())
