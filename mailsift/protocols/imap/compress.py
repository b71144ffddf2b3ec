"""COMPRESS=DEFLATE (RFC 4978): after `OK DEFLATE active` both directions are raw DEFLATE
streams (RFC 1951, no zlib or gzip header) on top of whatever carries the session, so with TLS
the compression sits inside TLS (TLS compression itself is off in every context we make).

The session swaps its reader and writer for the two wrappers below and goes on as before:
- DeflateReader.read(n) returns decompressed bytes, never more than n per call (a 1 KB
  deflate bomb of gigabytes is inflated chunk by chunk as the session's own line and literal
  limits consume it, never at once);
- DeflateWriter.write() compresses into the stream; drain() ends what was written with a
  sync flush (Z_SYNC_FLUSH) so the client can decode every response sent so far, then drains
  the transport. The session drains before every read it waits on, so nothing the client
  needs stays in the compressor.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (no import at run time: session.py imports this module)
    from mailsift.protocols.imap.session import ImapSession
    from mailsift.protocols.imap.parser import Command

CAPABILITIES = ("COMPRESS=DEFLATE",)
LEVEL = 6       # zlib's default: most of the gain for IMAP's text at a fraction of level 9's CPU
WBITS = -15     # raw DEFLATE, 32 KB window


class DeflateReader:
    """The compressed input of a StreamReader, inflated on demand."""

    def __init__(self, raw: asyncio.StreamReader, pending: bytes = b"") -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj(WBITS)
        self.tail = pending          # compressed bytes not inflated yet (unconsumed_tail)
        self.eof = False

    async def read(self, n: int = 65536) -> bytes:
        """Up to n inflated bytes; b"" at the end of the stream. Raises ConnectionError for a
        client that sends what is not DEFLATE (the session ends the connection)."""
        n = max(1, n)
        while True:
            if self.tail:
                data, self.tail = self.tail, b""
                try:
                    out = self.inflate.decompress(data, n)
                except zlib.error as exc:  # not DEFLATE: end the connection as for a reset
                    raise ConnectionError(f"invalid DEFLATE data: {exc}") from None
                self.tail = self.inflate.unconsumed_tail
                if out:
                    return out
                if self.inflate.eof:       # the client ended the DEFLATE stream: nothing may follow
                    return b""
                continue
            if self.eof:
                return b""
            chunk = await self.raw.read(65536)
            if not chunk:
                self.eof = True
                return b""
            self.tail = chunk


class DeflateWriter:
    """A StreamWriter whose bytes are compressed; drain() makes them decodable (sync flush)."""

    def __init__(self, raw: asyncio.StreamWriter, level: int = LEVEL) -> None:
        self.raw = raw
        self.deflate = zlib.compressobj(level, zlib.DEFLATED, WBITS)
        self.unflushed = False

    @property
    def transport(self) -> Any:
        return self.raw.transport

    def write(self, data: bytes) -> None:
        if not data:
            return
        out = self.deflate.compress(data)
        self.unflushed = True
        if out:
            self.raw.write(out)

    def flush_stream(self) -> None:
        if self.unflushed:
            self.raw.write(self.deflate.flush(zlib.Z_SYNC_FLUSH))
            self.unflushed = False

    async def drain(self) -> None:
        self.flush_stream()
        await self.raw.drain()

    def close(self) -> None:
        try:
            self.flush_stream()     # a BYE written just before closing still reaches the client
        except (zlib.error, RuntimeError):
            pass
        self.raw.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.raw.get_extra_info(name, default)

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    async def wait_closed(self) -> None:
        await self.raw.wait_closed()


async def cmd_compress(session: ImapSession, cmd: Command) -> None:
    """COMPRESS DEFLATE: answered uncompressed, then both directions compressed. Any bytes the
    client sent after the command are already compressed data."""
    if cmd.args["mechanism"] != "DEFLATE":
        session.tagged(cmd.tag, "NO", "Unknown compression mechanism", "CANNOT")
        return
    if isinstance(session.writer, DeflateWriter):
        session.tagged(cmd.tag, "NO", "DEFLATE is active already", "COMPRESSIONACTIVE")
        return
    session.tagged(cmd.tag, "OK", "DEFLATE active")
    await session.flush()
    session.inp.inflate()
    session.writer = DeflateWriter(session.writer)
