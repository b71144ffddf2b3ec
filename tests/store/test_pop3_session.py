"""The POP3 session in-process: a real Store, real Users and real loopback sockets, with the
server's loop in a thread, so the tests can reach behind it (remove a message mid-session,
shorten the idle timeout) and run many random command sequences against a model quickly."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailsift.protocols import pop3
from mailsift.store.api import Store
from mailsift.store.auth import LoginGate
from mailsift.serve.context import SessionContext
from mailsift.store.settings import StoreSettings
from mailsift.store.users import Users
from test_pop3_support import PASSWORD, USER, Pop3Client


class InProcessServer:
    def __init__(self, root: Path) -> None:
        self.store = Store(root / "mail")
        self.users = Users(root / "users.db")
        self.users.add(USER, PASSWORD)
        self.settings = StoreSettings(mail_root=str(root / "mail"), users=str(root / "users.db"))
        self.shared: dict[str, Any] = {}
        self.throttle = LoginGate()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def on_connect(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
                ctx = SessionContext(store=self.store, users=self.users, settings=self.settings,
                                     peer=w.get_extra_info("peername"), is_loopback=True, protocol="pop3",
                                     shared=self.shared, throttle=self.throttle)
                try:
                    await pop3.handle(r, w, ctx)
                finally:
                    w.close()

            async def start() -> None:
                self.server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
                self.port = self.server.sockets[0].getsockname()[1]
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def client(self) -> Pop3Client:
        return Pop3Client("127.0.0.1", self.port)

    def close(self) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path)
    try:
        yield srv
    finally:
        srv.close()


def fill(srv: InProcessServer, n: int) -> None:
    box = srv.store.mailbox(USER)
    for i in range(n):
        box.deliver(f"From: s@example.org\nSubject: m{i}\n\nbody {i}\n{'x' * i}\n".encode(), folder="INBOX")


def test_idle_session_is_logged_out(server: InProcessServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop3, "IDLE_TIMEOUT", 0.5)
    c = server.client()
    assert c.login().startswith(b"+OK")
    assert c.line() == b"-ERR autologout: idle for too long"
    assert c.closed()
    # the lock went with it
    c = server.client()
    assert c.login().startswith(b"+OK")
    assert c.cmd("QUIT").startswith(b"+OK")


def test_message_removed_behind_the_session(server: InProcessServer) -> None:
    fill(server, 3)
    c = server.client()
    assert c.login().startswith(b"+OK maildrop has 3")
    box = server.store.mailbox(USER)
    uid = box.list("INBOX")[1].uid
    box.store_flags("INBOX", [uid], {"\\Deleted"}, "add")
    box.expunge("INBOX", [uid])  # as an IMAP client would
    assert c.cmd("RETR 2") == b"-ERR message was removed by another client"
    assert c.cmd("TOP 2 0") == b"-ERR message was removed by another client"
    assert c.cmd("RETR 3").startswith(b"+OK")
    c.multiline()
    assert c.cmd("DELE 2").startswith(b"+OK")  # deleting what is already gone is harmless
    assert c.cmd("QUIT").startswith(b"+OK")
    assert len(box.list("INBOX")) == 2


def test_retr_not_top_marks_seen_at_quit(server: InProcessServer) -> None:
    fill(server, 3)
    c = server.client()
    assert c.login().startswith(b"+OK")
    assert c.cmd("RETR 1").startswith(b"+OK")
    c.multiline()
    assert c.cmd("TOP 2 999").startswith(b"+OK")  # TOP reads without marking (fetchmail's keep mode)
    c.multiline()
    box = server.store.mailbox(USER)
    assert all("\\Seen" not in m.flags for m in box.list("INBOX"))  # not before QUIT
    assert c.cmd("QUIT").startswith(b"+OK")
    assert c.closed()
    flags = [m.flags for m in box.list("INBOX")]
    assert "\\Seen" in flags[0] and "\\Seen" not in flags[1] and "\\Seen" not in flags[2]


commands = st.lists(st.one_of(
    st.tuples(st.just("DELE"), st.integers(0, 7)),
    st.tuples(st.just("LIST"), st.integers(0, 7)),
    st.tuples(st.just("UIDL"), st.integers(0, 7)),
    st.tuples(st.just("RSET"), st.none()),
    st.tuples(st.just("STAT"), st.none()),
), max_size=25)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmds=commands, quit_at_end=st.booleans())
def test_state_machine_against_a_model(tmp_path_factory: pytest.TempPathFactory, cmds: list[tuple[str, Any]],
                                       quit_at_end: bool) -> None:
    srv = InProcessServer(tmp_path_factory.mktemp("model"))
    try:
        fill(srv, 6)
        sizes = {m.uid: m.size for m in srv.store.mailbox(USER).list("INBOX")}
        uids = sorted(sizes)
        c = srv.client()
        assert c.login().startswith(b"+OK")
        deleted: set[int] = set()
        for verb, n in cmds:
            reply = c.cmd(f"{verb} {n}" if n is not None else verb)
            live = [i for i in range(1, 7) if i not in deleted]
            if verb in ("DELE", "LIST", "UIDL"):
                if n in live:
                    assert reply.startswith(b"+OK"), (verb, n, reply)
                    if verb == "DELE":
                        deleted.add(n)
                    elif verb == "LIST":
                        assert reply == f"+OK {n} {sizes[uids[n - 1]]}".encode()
                else:
                    assert reply.startswith(b"-ERR"), (verb, n, reply)
            elif verb == "RSET":
                deleted.clear()
                assert reply == f"+OK maildrop has 6 messages ({sum(sizes.values())} octets)".encode()
            else:
                assert reply == f"+OK {len(live)} {sum(sizes[uids[i - 1]] for i in live)}".encode()
        if quit_at_end:
            assert c.cmd("QUIT").startswith(b"+OK")
            assert c.closed()
            expect = [u for i, u in enumerate(uids, 1) if i not in deleted]
        else:
            c.close()
            expect = uids
        left = pop3_wait_left(srv, expect)
        assert left == expect
    finally:
        srv.close()


def pop3_wait_left(srv: InProcessServer, expect: list[int]) -> list[int]:
    """The INBOX UIDs once the session has ended (a dropped connection ends asynchronously)."""
    from harness.procs import wait_for

    box = srv.store.mailbox(USER)
    try:
        wait_for(lambda: USER not in srv.shared.get("pop3.in_use", set()), 10, what="session end")
    except TimeoutError:
        pass
    return [m.uid for m in box.list("INBOX")]
