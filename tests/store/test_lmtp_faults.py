"""Our own faults answer 4xx, never 5xx: the LMTP session in-process over a real store whose disk
is made to fail (ENOSPC, EIO) at chosen points."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from mailsift.protocols import lmtp
from mailsift.store import maildir as md
from mailsift.store.api import INBOX, Store
from mailsift.serve.context import SessionContext
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users


async def session(ctx: SessionContext, script: bytes) -> list[bytes]:
    async def handler(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await lmtp.handle(r, w, ctx)
        finally:
            w.close()  # as the server does after a handler returns

    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(script)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    server.close()
    await server.wait_closed()
    return data.split(b"\r\n")[:-1]


@pytest.fixture
def ctx(tmp_path: Path) -> SessionContext:
    users = Users(tmp_path / "users.db")
    users.add("alice@example.test", "pw")
    users.add("bob@example.test", "pw")
    settings = StoreSettings(mail_root=str(tmp_path / "mail"), users=str(tmp_path / "users.db"))
    store = Store(tmp_path / "mail")
    yield SessionContext(store=store, users=users, settings=settings, shared={"hostname": "t.test"})
    store.close()


SCRIPT = (b"LHLO x\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\n"
          b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n")


@pytest.mark.parametrize("code,reply", [(errno.ENOSPC, b"452 4.2.2"), (errno.EDQUOT, b"452 4.2.2"),
                                        (errno.EIO, b"451 4.3.0")])
def test_write_failure_is_a_temporary_failure(ctx: SessionContext, monkeypatch, code: int, reply: bytes) -> None:
    real = md.write_tmp

    def failing(folder_path, name, data, mtime=None):
        if "bob" in str(folder_path):
            raise OSError(code, os.strerror(code))
        return real(folder_path, name, data, mtime)

    monkeypatch.setattr(md, "write_tmp", failing)
    lines = asyncio.run(session(ctx, SCRIPT))
    after = lines[lines.index(b"354 2.0.0 go ahead, end with <CRLF>.<CRLF>") + 1:]
    assert after[0].startswith(b"250 2.0.0 <alice@example.test>")
    assert after[1].startswith(reply + b" <bob@example.test>")
    assert not any(ln[:1] == b"5" for ln in lines)
    bob = ctx.store.mailbox("bob@example.test")
    assert bob.list(INBOX) == [] and os.listdir(bob.path / "tmp") == []


def test_rename_failure_undoes_the_index_entry(ctx: SessionContext, monkeypatch) -> None:
    real_rename = os.rename

    def failing(src, dst):
        if "/new/" in str(dst):
            raise OSError(errno.EIO, "I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing)
    lines = asyncio.run(session(ctx, SCRIPT))
    assert sum(1 for ln in lines if ln.startswith(b"451 4.3.0")) == 2
    monkeypatch.setattr(os, "rename", real_rename)
    for user in ("alice@example.test", "bob@example.test"):
        box = ctx.store.mailbox(user)
        assert box.list(INBOX) == []
        assert os.listdir(box.path / "tmp") == [] and os.listdir(box.path / "new") == []
    # the retry (same bytes) is stored: the failed attempt left no dedup record behind
    lines = asyncio.run(session(ctx, SCRIPT))
    assert sum(1 for ln in lines if ln.startswith(b"250 2.0.0") and b"duplicate" not in ln) == 2


def test_unexpected_exception_is_a_temporary_failure(ctx: SessionContext, monkeypatch) -> None:
    def boom(*a, **k):
        raise RuntimeError("bug")

    monkeypatch.setattr(ctx.store, "mailbox", boom)
    lines = asyncio.run(session(ctx, SCRIPT))
    assert sum(1 for ln in lines if ln.startswith(b"451 4.3.0")) == 2
    assert not any(ln[:1] == b"5" for ln in lines)


def test_serve_runs_an_on_start_helper_and_stops_it(tmp_path: Path) -> None:
    """The hook `mailsift serve` uses for the feedback learner: started with the store once the
    listeners serve, stopped at SIGTERM before the store closes."""
    import signal

    from harness.procs import free_port
    from mailsift.serve.server import serve

    calls: list[object] = []

    class Helper:
        def stop(self) -> None:
            calls.append("stop")

    def on_start(store: Store) -> Helper:
        calls.append(("start", store.root))
        os.kill(os.getpid(), signal.SIGTERM)  # handled by serve's loop: a clean stop
        return Helper()

    settings = StoreSettings(mail_root=str(tmp_path / "mail"), users=str(tmp_path / "u.db"),
                             lmtp=f"127.0.0.1:{free_port()}", pop3="off", lookup="off")
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert asyncio.run(serve(settings, on_start=on_start)) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert calls == [("start", tmp_path / "mail"), "stop"]
