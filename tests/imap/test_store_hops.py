"""Store-thread hand-offs per command (perf, docs/imap.md "Benchmark"), and that the commands
which skip one still see every change.

A hand-off of a store call to a worker thread costs more CPU than most of the calls it carries
(futex wake-ups, GIL hand-overs, context switches). The load benchmark's session cycle (SELECT,
FETCH, STORE, APPEND, NOOP, STORE, EXPUNGE) made 9 of them; a session now knows when its own
change was the only one (the folder's stamps around it), fetches the listing that tells the
client of its APPEND in the APPEND's own hop, and answers a NOOP with nothing new without a hop.
SELECT of a folder whose listing is in memory, STORE and EXPUNGE of a few messages run on the
event loop when the mailbox is free and the folder in sync (Mailbox._nowait; an EXPUNGE renames
its files into tmp/ and leaves their unlink to a background thread); the APPEND (fsyncs) still
hops. A mailbox held by another process sends SELECT, STORE and EXPUNGE to a thread.

The session runs in-process on a real store and user database, with a thread pool that counts
what it is handed; once as the main process runs it and once as an IMAP worker process does
(with a connection limiter: then every command checks the folder's stamp)."""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mailsift.protocols.imap import session
from mailsift.protocols.imap.context import SERVICES_KEY, ImapServices
from mailsift.protocols.imap.headercache import HeaderCache
from mailsift.protocols.imap.storethreads import StoreThreads
from mailsift.serve.context import SessionContext
from mailsift.store.api import Store
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users

USER, PW = "hops@example.test", "hops-pw"


def message(i: int) -> bytes:
    return (f"From: a@example.test\r\nTo: {USER}\r\nSubject: hop {i}\r\nMessage-ID: <hop{i}@example.test>\r\n"
            f"\r\nbody {i}\r\n").encode()


class CountingExecutor(StoreThreads):
    """The sessions' store threads, counting the calls handed to them."""

    def __init__(self) -> None:
        super().__init__(2, "hops")
        self.handed: list[str] = []

    async def call(self, fn: Any, *args: Any) -> Any:
        inner = fn.func if isinstance(fn, functools.partial) else fn
        self.handed.append(getattr(inner, "__name__", repr(inner)))
        return await super().call(fn, *args)


class CountingLimiter:
    """Connection caps counted in one place, as the main process counts for its IMAP workers
    (serve/workers.WorkerLink): its presence puts the session in worker-process mode."""

    def __init__(self) -> None:
        self.open: dict[tuple[str, str], int] = {}

    async def acquire(self, what: str, key: str, cap: int) -> bool:
        n = self.open.get((what, key), 0)
        if n >= cap:
            return False
        self.open[(what, key)] = n + 1
        return True

    def release(self, what: str, key: str) -> None:
        self.open[(what, key)] -= 1


@pytest.fixture(params=["main process", "worker process"])
def world(request):
    d = Path(tempfile.mkdtemp(prefix="imap-hops-"))
    users = Users(d / "users.db")
    users.add(USER, PW)
    store = Store(d / "mail")
    box = store.mailbox(USER)
    for i in range(5):
        box.deliver(message(i))
    executor = CountingExecutor()
    limiter = CountingLimiter() if request.param == "worker process" else None
    shared: dict[str, Any] = {SERVICES_KEY: ImapServices(threads=executor, headers=HeaderCache(), limiter=limiter)}
    yield store, users, shared, executor, d
    executor.shutdown()
    store.close()


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.n = reader, writer, 0

    async def cmd(self, text: bytes) -> list[bytes]:
        self.n += 1
        tag = b"t%d" % self.n
        self.writer.write(tag + b" " + text + b"\r\n")
        out = []
        while True:
            line = await asyncio.wait_for(self.reader.readline(), 10)
            m = re.search(rb"\{(\d+)\+?\}\r\n$", line)
            if m:
                line += await self.reader.readexactly(int(m.group(1)))
                line += await self.reader.readline()
            out.append(line)
            if line.startswith(tag + b" ") or not line:
                assert line.startswith(tag + b" OK"), out
                return out


async def serve(store: Store, users: Users, shared: dict[str, Any]):
    settings = StoreSettings(mail_root=str(store.root), users=str(users.path))

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = SessionContext(store=store, users=users, settings=settings, peer=writer.get_extra_info("peername"),
                             is_loopback=True, protocol="imap", shared=shared)
        await session.handle(reader, writer, ctx)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def client(port: int) -> Client:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await reader.readline()
    c = Client(reader, writer)
    await c.cmd(f'LOGIN "{USER}" "{PW}"'.encode())
    return c


def test_the_session_cycle_hands_off_only_its_append(world) -> None:
    store, users, shared, executor, _d = world
    extra = message(99)

    async def go() -> list[dict[str, list[str]]]:
        server, port = await serve(store, users, shared)
        async with server:
            c = await client(port)
            rounds: list[dict[str, list[str]]] = []

            async def step(name: str, text: bytes) -> list[bytes]:
                before = len(executor.handed)
                out = await c.cmd(text)
                rounds[-1][name] = executor.handed[before:]
                return out

            for _ in range(2):  # the second round as the first, with the listing in memory
                rounds.append({})
                await step("SELECT", b"SELECT INBOX")
                await step("FETCH headers", b"FETCH 1:5 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
                await step("FETCH body", b"FETCH 2 (BODY.PEEK[])")
                await step("STORE", b"STORE 3 +FLAGS (\\Seen)")
                appended = await step("APPEND", b"APPEND INBOX {%d+}\r\n" % len(extra) + extra)
                assert appended[0] == b"* 6 EXISTS\r\n" and appended[1].endswith(b" RECENT\r\n"), appended
                assert await step("NOOP", b"NOOP") == [b"t%d OK NOOP completed\r\n" % c.n]
                await step("STORE deleted", b"STORE 6 +FLAGS.SILENT (\\Deleted)")
                expunged = await step("EXPUNGE", b"EXPUNGE")
                assert expunged[0] == b"* 6 EXPUNGE\r\n", expunged
                await step("STORE again", b"STORE 3 +FLAGS (\\Seen)")  # no change at all
                await step("NOOP again", b"NOOP")
            c.writer.close()
            return rounds

    first, second = asyncio.run(go())
    cycle = {"SELECT": [], "FETCH headers": [], "FETCH body": [], "STORE": [], "APPEND": ["append"], "NOOP": [],
             "STORE deleted": [], "EXPUNGE": [], "STORE again": [], "NOOP again": []}
    assert first == {**cycle, "SELECT": ["select_data"]}  # (reads the folder: a thread does it)
    assert second == cycle


def test_a_mailbox_another_process_holds_sends_the_commands_to_a_thread(world) -> None:
    """With the mailbox lock held elsewhere (another process: its own lock file descriptor),
    SELECT, STORE and EXPUNGE wait for it in a worker thread, never on the event loop, and
    then answer as usual; the other sessions of the loop go on meanwhile."""
    store, users, shared, executor, d = world
    other = Store(d / "mail")
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with other.mailbox(USER).exclusive():
            held.set()
            release.wait(10)

    async def go() -> None:
        server, port = await serve(store, users, shared)
        async with server:
            c, c2 = await client(port), await client(port)
            await c.cmd(b"SELECT INBOX")
            await c.cmd(b"NOOP")
            holder = threading.Thread(target=hold)
            holder.start()
            await asyncio.to_thread(held.wait, 10)
            for text, call, want in ((b"STORE 1 +FLAGS (\\Deleted)", "store_flags", b"* 1 FETCH (FLAGS (\\Deleted"),
                                     (b"EXPUNGE", "expunge", b"* 1 EXPUNGE"),
                                     (b"SELECT INBOX", "select_data", b"* 4 EXISTS")):
                before = len(executor.handed)
                pending = asyncio.ensure_future(c.cmd(text))
                await asyncio.sleep(0.2)
                assert not pending.done()  # waiting for the other process, in a thread
                assert executor.handed[before:] == [call]
                assert len(await c2.cmd(b"NOOP")) == 1  # the loop serves others meanwhile
                release.set()
                out = await pending
                assert any(line.startswith(want) for line in out), out
                release.clear()
                holder.join()
                holder = threading.Thread(target=hold)
                held.clear()
                holder.start()
                await asyncio.to_thread(held.wait, 10)
            release.set()
            holder.join()
            c.writer.close()
            c2.writer.close()

    try:
        asyncio.run(go())
    finally:
        other.close()


def test_noop_without_a_hop_still_sees_every_change(world) -> None:
    """NOOP skips its listing only when neither the index nor the folder's directories changed:
    a change through another Store (another process: no event reaches this one), by another
    program in the Maildir (a new file, a renamed one), and by another session all show."""
    store, users, shared, executor, d = world
    other = Store(d / "mail")  # as another process on the same mail root
    inbox = d / "mail" / "example.test" / "hops"

    async def go() -> None:
        server, port = await serve(store, users, shared)
        async with server:
            c = await client(port)
            await c.cmd(b"SELECT INBOX")
            await c.cmd(b"STORE 1 +FLAGS (\\Flagged)")  # the view is current: NOOP needs no listing
            assert len(await c.cmd(b"NOOP")) == 1

            await asyncio.to_thread(other.mailbox(USER).deliver, message(10))
            out = await c.cmd(b"NOOP")
            assert out[:2] == [b"* 6 EXISTS\r\n", b"* 6 RECENT\r\n"], out

            await asyncio.to_thread(other.mailbox(USER).store_flags, "INBOX", [2], ["\\Answered"], "add")
            out = await c.cmd(b"NOOP")
            assert out[0] == b"* 2 FETCH (UID 2 FLAGS (\\Answered \\Recent))\r\n", out

            # another program: a new file in new/, then a flag given by renaming a file
            time.sleep(0.01)  # (directory mtimes in ns; the file system's clock may be coarser)
            (inbox / "new" / "1700000000.outside.host").write_bytes(message(11))
            out = await c.cmd(b"NOOP")
            assert out[:2] == [b"* 7 EXISTS\r\n", b"* 7 RECENT\r\n"], out
            time.sleep(0.01)
            src = next(p for p in (inbox / "new").iterdir() if b"Subject: hop 4" in p.read_bytes())
            os.rename(src, inbox / "cur" / (src.name + ":2,D"))
            out = await c.cmd(b"NOOP")
            assert out[0] == b"* 5 FETCH (UID 5 FLAGS (\\Draft \\Recent))\r\n", out

            # another session of this process: its change arrives as an event
            c2 = await client(port)
            await c2.cmd(b"SELECT INBOX")
            await c2.cmd(b"STORE 4 +FLAGS (\\Flagged)")
            out = await c.cmd(b"NOOP")
            assert out[0] == b"* 4 FETCH (UID 4 FLAGS (\\Flagged \\Recent))\r\n", out
            assert len(await c.cmd(b"NOOP")) == 1  # and then nothing more
            c.writer.close()
            c2.writer.close()

    try:
        asyncio.run(go())
    finally:
        other.close()
