"""Issue 6, bounds: BAD then the session goes on, until 20 BADs in a row close it; line and
literal sizes (synchronising and LITERAL+, swallowed literals never run as commands); sessions
per user capped through the real server, whatever case the user name is typed in, and a slot
freed by a dropped connection; the autologout timer restarts with every command."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import pytest

from harness.procs import wait_for
from imap.test_caches import msg, ok
from imap.wire import Wire
from mailsift.protocols.imap import session
from mailsift.protocols.imap.parser import Limits

pytestmark = pytest.mark.integration

ERIN, PW = "erin@example.test", "erin-pw"
FRED, FRED_PW = "fred@example.test", "fred-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {ERIN: PW, FRED: FRED_PW}, prefix="mailsift-imapbound-")


def connect(srv, user: str = ERIN, password: str = PW) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(user, password)
    return w


def test_twenty_bad_commands_in_a_row_close_the_connection_but_a_good_one_resets_the_count(srv) -> None:
    w = connect(srv)
    for round_ in range(2):  # 19 BADs, then a good command: the count starts again
        for i in range(session.MAX_BAD_COMMANDS - 1):
            _, done = w.command("FROBNICATE %d" % i)
            assert b" BAD " in done
        _, done = w.command("NOOP")
        assert ok(done), (round_, done)
    for i in range(session.MAX_BAD_COMMANDS - 1):
        _, done = w.command("FROBNICATE")
        assert b" BAD " in done
    w.send(b"last FROBNICATE\r\n")
    assert w.read_response().startswith(b"last BAD")
    assert w.read_response().startswith(b"* BYE")
    with pytest.raises((ConnectionError, OSError)):
        w.read_response()
    w.close()


def test_lines_up_to_the_bound_work_and_longer_ones_answer_bad(srv) -> None:
    w = connect(srv)
    w.command("SELECT INBOX")
    limit = Limits().max_line
    prefix = b"t1 SEARCH SUBJECT \""
    fits = prefix + b"x" * (limit - len(prefix) - 1) + b"\""
    assert len(fits) == limit
    w.send(fits + b"\r\n")
    assert w.read_response() == b"* SEARCH" and ok(w.read_response())
    w.send(b"t2 SEARCH SUBJECT \"" + b"x" * limit + b"\"\r\n")
    assert w.read_response() == b"* BAD Line too long"
    _, done = w.command("NOOP")  # the long line was dropped whole, nothing of it ran
    assert ok(done)
    w.close()


def test_literal_plus_over_the_bound_is_swallowed_not_run(srv) -> None:
    w = connect(srv)
    _, done = w.command("CREATE Precious")
    assert ok(done) or b"ALREADYEXISTS" in done
    n = Limits().max_literal + 1
    inside = b"\r\nz1 DELETE Precious\r\nz2 LOGOUT\r\n" * 100
    w.send(b"big APPEND INBOX {%d+}\r\n" % n + inside + b"y" * (n - len(inside)) + b"\r\n")
    reply = w.read_response()
    assert reply == b"big BAD [TOOBIG] Literal too big", reply
    untagged, done = w.command('LIST "" Precious')
    assert ok(done) and len(untagged) == 1  # the commands inside the literal did not run
    untagged, done = w.command("STATUS INBOX (MESSAGES)")
    assert ok(done) and untagged[0].endswith(b"(MESSAGES 0)")
    w.close()


def test_synchronising_literal_over_the_bound_gets_no_continuation(srv) -> None:
    w = connect(srv)
    w.send(b"big APPEND INBOX {%d}\r\n" % (Limits().max_literal + 1))
    reply = w.read_response()
    assert reply == b"big BAD [TOOBIG] Literal too big", reply  # and no "+ " before it
    # a literal within the bound still works on the same connection
    data = msg("small enough")
    w.send(b"ok1 APPEND INBOX {%d}\r\n" % len(data))
    assert w.read_line().startswith(b"+ ")
    w.send(data + b"\r\n")
    assert ok(w.read_response())
    w.close()


def test_a_literal_far_over_the_bound_ends_the_connection(srv) -> None:
    w = connect(srv)
    w.send(b"huge APPEND INBOX {%d+}\r\n" % (3 * Limits().max_command))
    assert w.read_response() == b"* BYE Literal too big"
    with pytest.raises((ConnectionError, OSError)):
        w.read_response()
    w.close()
    _, done = connect(srv).command("NOOP")  # the server is fine
    assert ok(done)


def test_sessions_per_user_are_capped_whatever_case_the_name_is_typed_in(srv) -> None:
    cap = session.MAX_CONNECTIONS_PER_USER
    held = [connect(srv, ERIN.upper() if i % 2 else ERIN) for i in range(cap)]
    extra = Wire(srv.host, srv.imap_port)
    for name in (ERIN, ERIN.upper(), "Erin@Example.Test"):
        _, done = extra.command(f'LOGIN "{name}" "{PW}"')
        assert b"NO [LIMIT]" in done, (name, done)
    other = connect(srv, FRED, FRED_PW)  # another user is not affected
    _, done = other.command("NOOP")
    assert ok(done)
    # a client that vanishes without LOGOUT frees its slot
    held.pop().sock.shutdown(socket.SHUT_RDWR)

    def login_works() -> bool:
        _, done = extra.command(f'LOGIN "{ERIN}" "{PW}"')
        return ok(done)
    wait_for(login_works, 10, what="the dropped session's slot")
    for w in held + [extra, other]:
        w.close()


def test_the_autologout_timer_restarts_with_every_command(monkeypatch, tmp_path: Path) -> None:
    """In-process (the timeout is 30 minutes in production), on a real store and user database."""
    from mailsift.store.api import Store
    from mailsift.serve.context import SessionContext
    from mailsift.store.settings import StoreSettings
    from mailsift.store.users import Users
    assert session.IDLE_TIMEOUT >= 30 * 60  # RFC 3501 5.4: at least 30 minutes
    monkeypatch.setattr(session, "IDLE_TIMEOUT", 1.5)
    users = Users(tmp_path / "users.db")
    users.add(ERIN, PW)
    store = Store(tmp_path / "mail")
    settings = StoreSettings(mail_root=str(store.root), users=str(users.path), allow_plaintext_anywhere=True)

    async def go() -> tuple[float, bytes]:
        async def on_connect(reader, writer):
            ctx = SessionContext(store=store, users=users, settings=settings, peer=writer.get_extra_info("peername"),
                                 is_loopback=True, protocol="imap", shared={})
            await session.handle(reader, writer, ctx)
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            await reader.readline()
            start = time.monotonic()
            for i in range(16):  # 3.2 s of commands 0.2 s apart: well past the 1.5 s timeout
                writer.write(b"n%d NOOP\r\n" % i)
                assert (await asyncio.wait_for(reader.readline(), 5)).startswith(b"n%d OK" % i)
                await asyncio.sleep(0.2)
            alive_for = time.monotonic() - start
            quiet = time.monotonic()
            bye = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            return alive_for, bye + b" after %.2f" % (time.monotonic() - quiet)
    try:
        alive_for, bye = asyncio.run(go())
    finally:
        store.close()
    assert alive_for > 3.0
    assert bye.startswith(b"* BYE Autologout"), bye
    waited = float(re.search(rb"after ([\d.]+)", bye).group(1))
    assert 1.0 < waited < 6.0, bye
