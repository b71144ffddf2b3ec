"""Limits that take too long against a real daemon: autologout (30 minutes in production),
connection caps per user and per address. The session runs in-process on a real store and user
database, with the timeouts and caps patched small."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from mailsift.protocols.imap import session
from mailsift.store.api import Store
from mailsift.serve.context import SessionContext
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users

USER, PW = "erin@example.test", "erin-pw"


@pytest.fixture(scope="module")
def backing():
    d = Path(tempfile.mkdtemp(prefix="imap-limits-"))
    users = Users(d / "users.db")
    users.add(USER, PW)
    store = Store(d / "mail")
    yield store, users, d
    store.close()


async def _serve(store, users, is_loopback: bool):
    shared: dict = {}
    settings = StoreSettings(mail_root=str(store.root), users=str(users.path),
                             allow_plaintext_anywhere=True)

    async def on_connect(reader, writer):
        ctx = SessionContext(store=store, users=users, settings=settings, peer=writer.get_extra_info("peername"),
                             is_loopback=is_loopback, protocol="imap", shared=shared)
        await session.handle(reader, writer, ctx)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _open(port: int):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    greeting = await reader.readline()
    return reader, writer, greeting


async def _cmd(reader, writer, line: bytes) -> list[bytes]:
    tag = line.split()[0]
    writer.write(line + b"\r\n")
    out = []
    while True:
        resp = await asyncio.wait_for(reader.readline(), 10)
        out.append(resp)
        if resp.startswith(tag + b" ") or not resp:
            return out


def test_autologout_after_idle_timeout(backing, monkeypatch) -> None:
    store, users, _ = backing
    monkeypatch.setattr(session, "IDLE_TIMEOUT", 0.5)

    async def go():
        server, port = await _serve(store, users, True)
        async with server:
            reader, writer, greeting = await _open(port)
            assert greeting.startswith(b"* OK")
            bye = await asyncio.wait_for(reader.readline(), 5)
            assert bye.startswith(b"* BYE Autologout")
            assert await reader.read() == b""  # closed
            # IDLE does not keep a session forever either
            reader, writer, _ = await _open(port)
            await _cmd(reader, writer, f'a LOGIN "{USER}" "{PW}"'.encode())
            writer.write(b"b IDLE\r\n")
            assert (await reader.readline()).startswith(b"+ ")
            assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"* BYE Autologout")
    asyncio.run(go())


def test_sessions_per_user_are_capped(backing, monkeypatch) -> None:
    store, users, _ = backing
    monkeypatch.setattr(session, "MAX_CONNECTIONS_PER_USER", 2)

    async def go():
        server, port = await _serve(store, users, True)
        async with server:
            conns = []
            for i in range(3):
                reader, writer, _ = await _open(port)
                reply = await _cmd(reader, writer, f'a LOGIN "{USER}" "{PW}"'.encode())
                conns.append((reader, writer, reply[-1]))
            assert [c[2].split()[1] for c in conns] == [b"OK", b"OK", b"NO"]
            assert b"[LIMIT]" in conns[2][2]
            conns[0][1].close()
            await asyncio.sleep(0.2)
            reply = await _cmd(conns[2][0], conns[2][1], f'b LOGIN "{USER}" "{PW}"'.encode())
            assert reply[-1].startswith(b"b OK")  # a slot was freed
    asyncio.run(go())


def test_connections_per_address_are_capped_except_loopback(backing, monkeypatch) -> None:
    store, users, _ = backing
    monkeypatch.setattr(session, "MAX_CONNECTIONS_PER_ADDRESS", 2)

    async def go(is_loopback: bool) -> list[bytes]:
        server, port = await _serve(store, users, is_loopback)
        async with server:
            greetings = []
            conns = []
            for _ in range(3):
                reader, writer, greeting = await _open(port)
                conns.append(writer)
                greetings.append(greeting)
            for w in conns:
                w.close()
            return greetings
    remote = asyncio.run(go(False))
    assert [g[:4] for g in remote] == [b"* OK", b"* OK", b"* BY"]
    local = asyncio.run(go(True))
    assert all(g.startswith(b"* OK") for g in local)
