"""The project's Redis client: small, pipelining, RESP2 over asyncio streams.

One connection carries the commands of every concurrent request: commands issued in the
same event-loop turn leave in one write, replies are matched to them in order. That is what
makes a shared Redis cheap for a policy service answering many smtpd processes at once
(bench/redis_clients.py: several times redis-py's asyncio client's rate for the greylist's
traffic; docs/policy.md). The greylist (policy/backends.py) and the model sharing
(share/channel.py, through `SyncRespClient`) use it.

Any command can be sent; replies are str (decode=True) or bytes (decode=False, for binary
values). Every failure is `RespError`; a timeout or a broken connection fails the commands in
flight and the next command reconnects.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


class RespError(Exception):
    """Redis unreachable, timed out, or answered an error."""


@dataclass(frozen=True)
class RedisAddress:
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""  # a unix socket instead of host:port
    db: int = 0
    username: str = ""
    password: str = ""
    tls: bool = False


def parse_redis_url(url: str) -> RedisAddress:
    """redis://[[USER]:PASSWORD@]HOST[:PORT][/DB], rediss://... (TLS), unix://PATH[?db=N]."""
    parts = urlsplit(url)
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        if not parts.path:
            raise ValueError(f"no socket path in {url!r}")
        return RedisAddress(path=parts.path, db=int(db), username=user, password=password)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis URL: {url!r}")
    db_text = parts.path.lstrip("/") or "0"
    try:
        port = parts.port or 6379
        db = int(db_text)
    except ValueError:
        raise ValueError(f"bad port or database number in {url!r}") from None
    return RedisAddress(host=parts.hostname or "127.0.0.1", port=port, db=db,
                        username=user, password=password, tls=parts.scheme == "rediss")


def encode_command(args: tuple[str | bytes | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _ReplyError(Exception):
    """An error reply (-ERR ...): that command failed, the connection is fine."""


async def read_reply(reader: asyncio.StreamReader, decode: bool = True) -> Any:
    line = await reader.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by redis")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return _ReplyError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = await reader.readexactly(n + 2)
        return data[:-2].decode(errors="replace") if decode else data[:-2]
    if kind == b"*":
        n = int(rest)
        if n < 0:
            return None
        return [await read_reply(reader, decode) for _ in range(n)]
    raise ConnectionError(f"unexpected reply from redis: {line[:40]!r}")


class RespClient:
    def __init__(self, address: RedisAddress, timeout: float = 2.0, decode: bool = True) -> None:
        self.address = address
        self.timeout = timeout
        self.decode = decode
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiting: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._outbuf = bytearray()
        self._flush_scheduled = False
        self._connecting: asyncio.Lock | None = None

    async def command(self, *args: str | bytes | int) -> Any:
        if self._writer is None:
            await self._connect()
        return await self._send(encode_command(args))

    async def _send(self, data: bytes) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiting.append(fut)
        self._outbuf += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            async with asyncio.timeout(self.timeout):
                reply = await fut
        except TimeoutError:
            self._disconnect(RespError(f"redis did not answer within {self.timeout}s"))
            raise RespError(f"redis did not answer within {self.timeout}s") from None
        if isinstance(reply, _ReplyError):
            raise RespError(f"redis: {reply}")
        return reply

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._writer is None or not self._outbuf:
            return
        data, self._outbuf = bytes(self._outbuf), bytearray()
        try:
            self._writer.write(data)
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._disconnect(RespError(f"redis: {exc}"))

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None:
                return
            a = self.address
            try:
                async with asyncio.timeout(self.timeout):
                    if a.path:
                        reader, writer = await asyncio.open_unix_connection(a.path)
                    else:
                        ctx = ssl.create_default_context() if a.tls else None
                        reader, writer = await asyncio.open_connection(a.host, a.port, ssl=ctx)
            except (OSError, TimeoutError) as exc:
                where = a.path or f"{a.host}:{a.port}"
                raise RespError(f"cannot connect to redis at {where}: {exc or 'timeout'}") from None
            self._reader, self._writer = reader, writer
            self._reader_task = asyncio.create_task(self._read_replies(reader))
            if a.password:
                auth = (a.username, a.password) if a.username else (a.password,)
                await self._send(encode_command(("AUTH", *auth)))
            if a.db:
                await self._send(encode_command(("SELECT", a.db)))

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                reply = await read_reply(reader, self.decode)
                if not self._waiting:
                    raise ConnectionError("redis sent a reply nobody asked for")
                fut = self._waiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except asyncio.CancelledError:
            raise
        except (ConnectionError, OSError, ValueError, asyncio.IncompleteReadError) as exc:
            self._disconnect(RespError(f"redis connection lost: {exc}"))

    def _disconnect(self, exc: RespError) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        task, self._reader_task = self._reader_task, None
        self._outbuf = bytearray()
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if writer is not None:
            writer.close()
        while self._waiting:
            fut = self._waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)

    async def close(self) -> None:
        writer, task = self._writer, self._reader_task
        self._disconnect(RespError("client closed"))
        if task is not None:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing
                pass
        if writer is not None:
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


class SyncRespClient:
    """The same client for threaded code: its own event loop, one command at a time."""

    def __init__(self, url: str, timeout: float = 5.0, decode: bool = False) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = RespClient(parse_redis_url(url), timeout=timeout, decode=decode)

    def command(self, *args: str | bytes | int) -> Any:
        return self._loop.run_until_complete(self._client.command(*args))

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.close())
        finally:
            self._loop.close()
