"""The pipelining Redis client against a real redis-server."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from harness.redis import RedisServer
from mailsift.resp import RedisAddress, RespClient, RespError, encode_command, parse_redis_url


def test_parse_urls() -> None:
    assert parse_redis_url("redis://10.0.0.5:6380/2") == RedisAddress("10.0.0.5", 6380, db=2)
    assert parse_redis_url("redis://localhost") == RedisAddress("localhost", 6379)
    assert parse_redis_url("rediss://:s%40cret@h/1") == RedisAddress("h", 6379, db=1, password="s@cret", tls=True)
    assert parse_redis_url("redis://u:p@h:1/0").username == "u"
    assert parse_redis_url("unix:///run/redis.sock?db=3") == RedisAddress(path="/run/redis.sock", db=3)
    for bad in ("http://h", "redis://h:notaport/0", "redis://h/x", "unix://?db=1"):
        with pytest.raises(ValueError):
            parse_redis_url(bad)


def test_encode_command() -> None:
    assert encode_command(("SET", "k", "a b\n", "EX", 5)) == b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\na b\n\r\n$2\r\nEX\r\n$1\r\n5\r\n"


def test_concurrent_commands_share_one_connection(redis_server: RedisServer) -> None:
    async def main() -> None:
        c = RespClient(parse_redis_url(redis_server.url))
        try:
            await asyncio.gather(*(c.command("SET", f"k{i}", f"v\n{i}", "EX", 60) for i in range(200)))
            got = await asyncio.gather(*(c.command("GET", f"k{i}") for i in range(200)))
            assert got == [f"v\n{i}" for i in range(200)]
            assert await c.command("MGET", "k1", "missing", "k2") == ["v\n1", None, "v\n2"]
            with pytest.raises(RespError, match="WRONGTYPE|ERR"):
                await c.command("LPUSH", "k1", "x")  # an error reply fails that command only
            assert await c.command("GET", "k3") == "v\n3"
            clients = await c.command("CLIENT", "LIST")
            assert clients.count("cmd=") == 1  # all of it on one connection
        finally:
            await c.close()
    asyncio.run(main())


def test_password_and_database(workdir: Path) -> None:
    server = RedisServer(workdir / "auth", password="s3cret").start()
    try:
        async def main() -> None:
            c = RespClient(parse_redis_url(f"redis://:s3cret@127.0.0.1:{server.port}/3"))
            await c.command("SET", "x", "in db 3")
            assert await c.command("CLIENT", "INFO") and "db=3" in await c.command("CLIENT", "INFO")
            await c.close()
            wrong = RespClient(parse_redis_url(f"redis://:nope@127.0.0.1:{server.port}/0"))
            with pytest.raises(RespError):
                await wrong.command("GET", "x")
            await wrong.close()
        asyncio.run(main())
    finally:
        server.stop()


def test_silent_server_times_out_and_refused_connection_fails() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    t = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
    t.start()

    async def main() -> None:
        c = RespClient(RedisAddress("127.0.0.1", port), timeout=0.5)
        with pytest.raises(RespError, match="did not answer"):
            await c.command("GET", "x")
        await c.close()
        listener.close()
        c2 = RespClient(RedisAddress("127.0.0.1", port), timeout=0.5)
        with pytest.raises(RespError, match="cannot connect"):
            await c2.command("GET", "x")
        await c2.close()
    try:
        asyncio.run(main())
    finally:
        for s in accepted:
            s.close()
        listener.close()
