"""COMPRESS=DEFLATE (RFC 4978): the stream wrappers alone (a deflate bomb is inflated a chunk at a
time, garbage ends the connection, every drain makes the output decodable), then whole
sessions through compression against a real `mailsift serve` and a private Dovecot 2.3 with
its imap_zlib plugin (the same answers and message bytes, synchronising literals, IDLE), and
over implicit TLS, where the compression runs inside TLS."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import zlib
from pathlib import Path

import pytest

from harness.procs import free_port
from imap import dovecot_pair
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap.compress import DeflateReader, DeflateWriter
from mailsift.tls import client_context, make_self_signed

USER, PW = "zip@example.test", "zip-pw"


# -- the wrappers ------------------------------------------------------------------------------

def _reader_with(data: bytes) -> asyncio.StreamReader:
    r = asyncio.StreamReader(limit=1 << 30)
    r.feed_data(data)
    r.feed_eof()
    return r


def test_a_deflate_bomb_is_inflated_a_chunk_at_a_time() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\0" * (64 << 20)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(payload) < 100_000  # 64 MiB of zeros in under 100 KB

    async def run() -> tuple[int, int]:
        # the first bytes were already read with the COMPRESS command: handed over as pending
        reader = DeflateReader(_reader_with(payload[10:]), pending=payload[:10])
        total, biggest = 0, 0
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return total, biggest
            total += len(chunk)
            biggest = max(biggest, len(chunk))

    total, biggest = asyncio.run(run())
    assert total == 64 << 20 and biggest <= 65536


def test_garbage_after_compress_is_a_connection_error() -> None:
    async def run() -> None:
        await DeflateReader(_reader_with(b"\xff" * 100)).read()

    with pytest.raises(ConnectionError):
        asyncio.run(run())


def test_every_drain_leaves_the_output_decodable() -> None:
    async def run() -> list[bytes]:
        sent: list[bytes] = []

        class Raw:
            transport = None

            def write(self, data: bytes) -> None:
                sent.append(data)

            async def drain(self) -> None:
                sent.append(b"|")

            def close(self) -> None:
                sent.append(b"closed")

        w = DeflateWriter(Raw())  # type: ignore[arg-type]
        inflate = zlib.decompressobj(-15)
        got = []
        for line in (b"* OK one\r\n", b"* OK two\r\n" * 1000, b"a1 OK done\r\n"):
            w.write(line)
            await w.drain()
            data = b"".join(x for x in sent if x != b"|")
            sent.clear()
            got.append(inflate.decompress(data))
        await w.drain()                        # nothing new: nothing written
        assert [x for x in sent if x != b"|"] == []
        w.write(b"* BYE\r\n")
        w.close()                              # flushed before the close
        got.append(inflate.decompress(b"".join(x for x in sent if x not in (b"|", b"closed"))))
        return got

    assert asyncio.run(run()) == [b"* OK one\r\n", b"* OK two\r\n" * 1000, b"a1 OK done\r\n", b"* BYE\r\n"]


# -- whole sessions ----------------------------------------------------------------------------

class DeflateWire(Wire):
    """Wire that, after compress(), speaks raw DEFLATE both ways (as a client must)."""

    deflate: zlib._Compress | None = None

    def compress(self) -> bytes:
        _, done = self.command("COMPRESS DEFLATE")
        if b" OK" in done:
            self.deflate = zlib.compressobj(6, zlib.DEFLATED, -15)
            self.inflate = zlib.decompressobj(-15)
            self.buf = self.inflate.decompress(self.buf)  # (nothing should be there)
        return done

    def _fill(self) -> None:
        if self.deflate is None:
            return super()._fill()
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            out = self.inflate.decompress(chunk)
            if out:
                self.buf += out
                return

    def send(self, data: bytes) -> None:
        if self.deflate is None:
            return super().send(data)
        self.sock.sendall(self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH))


DOVECOT_ZLIB = """
mail_plugins = $mail_plugins zlib
protocol imap {
  mail_plugins = $mail_plugins imap_zlib
}
"""


@pytest.fixture(scope="module")
def servers(mailsift_bin: str):
    imaps_port = free_port()

    def tls(workdir: Path) -> dict[str, str]:
        cert, key = workdir / "localhost.crt", workdir / "localhost.key"
        make_self_signed("localhost", cert, key)
        return {"tls_cert": str(cert), "tls_key": str(key), "imaps": f"127.0.0.1:{imaps_port}"}

    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-compress-", tls, dovecot_conf=DOVECOT_ZLIB) as (ours, dc):
        ours.imaps_port, ours.cafile = imaps_port, ours.workdir.parent / "localhost.crt"
        yield ours, dc


def status_word(done: bytes) -> bytes:
    m = re.match(rb"^\S+ (OK|NO|BAD)( \[COMPRESSIONACTIVE\])?", done)
    assert m, done
    return m.group(0).split(b" ", 1)[1]


def session_through_compression(w: DeflateWire) -> list[object]:
    """The same commands on either server: what each answered, comparably."""
    out: list[object] = []
    caps, _ = w.command("CAPABILITY")
    out.append(b"COMPRESS=DEFLATE" in caps[0])
    out.append(status_word(w.compress()))
    out.append(status_word(w.command("COMPRESS DEFLATE")[1]))     # already active
    out.append(status_word(w.command("CREATE Zipped")[1]))
    big = b"Subject: big\r\n\r\n" + b"".join(b"line %06d of a long and rather repetitive body\r\n" % i
                                               for i in range(5000))
    out.append(status_word(w.command(b"APPEND Zipped {%d+}\r\n" % len(big) + big)[1]))
    # a synchronising literal: the `+` comes back compressed, the literal goes compressed
    w.send(b"s1 APPEND Zipped (\\Seen) {21}\r\n")
    out.append(w.read_response()[:1])
    w.send(b"Subject: s\r\n\r\nsmall\r\n\r\n")
    done = w.read_response()
    while not done.startswith(b"s1 "):
        done = w.read_response()
    out.append(status_word(done))
    w.command("SELECT Zipped")
    untagged, done = w.command("FETCH 1:2 (FLAGS RFC822.SIZE BODY.PEEK[])")
    items = [fetch_items(u) for u in untagged if b" FETCH " in u]
    out += [(sorted(f for f in i["FLAGS"] if f != "\\Recent"), i["RFC822.SIZE"], i["BODY[]"]) for i in items]
    out.append(items[0]["BODY[]"] == big)
    w.send(b"i1 IDLE\r\n")
    out.append(w.read_response()[:1])
    w.send(b"DONE\r\n")
    done = w.read_response()
    while not done.startswith(b"i1 "):
        done = w.read_response()
    out.append(status_word(done))
    untagged, done = w.command("LOGOUT")
    out.append((untagged[0][:5], status_word(done)))                  # the BYE, compressed
    return out


def test_compressed_sessions_agree_with_dovecot(servers) -> None:
    ours, dc = servers
    answers = []
    for host, port in ((ours.host, ours.imap_port), (dc.host, dc.imap_port)):
        w = DeflateWire(host, port)
        w.login(USER, PW)
        answers.append(session_through_compression(w))
        w.close()
    assert answers[0] == answers[1], [(a, b) for a, b in zip(*answers) if a != b]
    assert answers[0][:4] == [True, b"OK", b"NO [COMPRESSIONACTIVE]", b"OK"] and answers[0][-4] is True


def test_no_compress_before_login_nor_of_an_unknown_kind(servers) -> None:
    ours, _ = servers
    w = DeflateWire(ours.host, ours.imap_port)
    assert b"COMPRESS" not in w.greeting
    _, done = w.command("COMPRESS DEFLATE")
    assert b" BAD " in done
    w.login(USER, PW)
    _, done = w.command("COMPRESS GZIP")
    assert b" NO " in done
    _, done = w.command("COMPRESS")
    assert b" BAD " in done
    assert b" OK" in w.compress()
    _, done = w.command("NOOP")
    assert b" OK " in done
    w.close()


def test_garbage_instead_of_deflate_ends_the_connection(servers) -> None:
    ours, _ = servers
    w = Wire(ours.host, ours.imap_port)
    w.login(USER, PW)
    _, done = w.command("COMPRESS DEFLATE")
    assert b" OK" in done
    w.sock.sendall(b"\xff" * 64 + b"a1 NOOP\r\n")
    w.sock.settimeout(10)
    rest = b""
    while True:  # the server closes; what it sends before is compressed, never a plain answer
        try:
            chunk = w.sock.recv(65536)
        except (ConnectionError, OSError):
            break
        if not chunk:
            break
        rest += chunk
    assert b"a1 OK" not in rest
    w.close()


def test_compression_inside_implicit_tls(servers) -> None:
    ours, _ = servers
    ctx = client_context(cafile=str(ours.cafile))
    raw = socket.create_connection((ours.host, ours.imaps_port), timeout=20)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    w = DeflateWire.__new__(DeflateWire)
    w.sock, w.buf, w.n = tls, b"", 0
    w.greeting = w.read_response()
    w.login(USER, PW)
    assert b" OK" in w.compress()
    untagged, done = w.command('LIST "" INBOX')
    assert b" OK " in done and untagged == [b'* LIST (\\HasNoChildren) "." INBOX']
    assert isinstance(tls, ssl.SSLSocket) and tls.compression() is None  # TLS itself does not compress
    w.command("LOGOUT")
    w.close()
