"""The login throttle of `mailsift serve` (store/authgate.py): keyed on the canonical user and the
client's address (an IPv6 /64 as one), one for POP3 and every IMAP worker process, and attempts
on a throttled key taking turns.

The live tests log in from different loopback addresses (127.0.0.x) so that each shows one key:
the default policy lets 3 failures pass, the next attempt waits 0 s, then 1, 2, 4 ... s."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from login_wire import imap_login, imap_ready, pop3_login
from harness.procs import free_port
from mailsift.store.auth import Authenticator
from mailsift.store.authgate import LoginGate, address_key, user_key
from mailsift.store.users import Users

USER, PASSWORD = "demo@example.test", "demo-secret-1"
OTHER, OTHER_PW = "other@example.test", "other-secret-2"


def serve(store_server: Callable[..., Any], workers: int, pop3: bool = False) -> Any:
    imap_port = free_port()
    extra: dict[str, Any] = {"imap": f"127.0.0.1:{imap_port}", "imap_workers": workers}
    if pop3:
        extra["pop3"] = f"127.0.0.1:{free_port()}"
    srv = store_server(users={USER: PASSWORD, OTHER: OTHER_PW}, **extra)
    srv.imap_port = imap_port
    srv.pop3_port = int(extra["pop3"].rsplit(":", 1)[1]) if pop3 else 0
    imap_ready(imap_port)
    return srv


def test_the_keys() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff:ffff:ffff:fffe") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("::ffff:192.0.2.7") == address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") != address_key("192.0.2.8")
    assert address_key("local") == "local"

    class U:
        def canonical(self, name: str) -> str:
            return Users("/nonexistent").canonical(name)
    for spelling in (" demo@example.test ", "DEMO@EXAMPLE.TEST.", "demo@example.test....", "Demo@Example.Test"):
        assert user_key(U(), spelling) == USER
    assert user_key(U(), "no at sign") == "?no at sign"


def test_an_ipv6_64_shares_one_counter(tmp_path: Path) -> None:
    """Failures from one /64 slow the next attempt from another address of that /64 (other users,
    so only the address key can count), but not one from the next /64."""
    users = Users(tmp_path / "users.db")
    for i in range(6):
        users.add(f"u{i}@example.test", "right-pw")
    auth = Authenticator(users, LoginGate())

    async def go() -> tuple[float, float, bool]:
        for i in range(4):
            assert not await auth.login(f"2001:db8:0:1::{i + 1:x}", f"u{i}@example.test", "wrong")
        t0 = time.monotonic()
        ok = await auth.login("2001:db8:0:1:abcd::9", "u4@example.test", "right-pw")
        same = time.monotonic() - t0
        t0 = time.monotonic()
        await auth.login("2001:db8:0:2::1", "u5@example.test", "right-pw")
        return same, time.monotonic() - t0, ok

    same, other, ok = asyncio.run(go())
    assert ok and same >= 0.95, same       # the 5th attempt of the /64 waits 1 s
    assert other < 0.9, other


def test_spellings_of_one_user_share_one_counter_and_one_account(store_server: Callable[..., Any]) -> None:
    srv = serve(store_server, workers=0)
    spellings = [" demo@example.test ", "DEMO@EXAMPLE.TEST.", "demo@example.test....", "Demo@Example.Test"]
    for i, name in enumerate(spellings):  # each from its own address: only the user key counts
        ok, _ = imap_login(srv.imap_port, name, "wrong", source=f"127.0.0.{10 + i}")
        assert not ok
    ok, took = imap_login(srv.imap_port, "DEMO@EXAMPLE.TEST.", PASSWORD, source="127.0.0.20")
    assert ok
    assert took >= 0.95, f"the 5th attempt on {USER} must wait 1 s, took {took:.2f}"
    ok, took = imap_login(srv.imap_port, " demo@example.test ", PASSWORD, source="127.0.0.21")
    assert ok and took < 0.9, took  # the good login forgot the user's failures
    assert srv.log().count(f"imap login {USER} from") == 2


def test_failures_count_across_pop3_and_imap_workers(store_server: Callable[..., Any]) -> None:
    srv = serve(store_server, workers=2, pop3=True)
    for _ in range(4):  # POP3, in the main process
        ok, _ = pop3_login(srv.pop3_port, USER, "wrong", source="127.0.0.30")
        assert not ok
    # IMAP, in a worker: the address's failures count there (another user, the same address) ...
    ok, took = imap_login(srv.imap_port, OTHER, OTHER_PW, source="127.0.0.30")
    assert ok and took >= 0.95, took
    # ... and the user's (the same user, another address)
    ok, took = imap_login(srv.imap_port, USER, PASSWORD, source="127.0.0.31")
    assert ok and took >= 0.95, took
    # IMAP failures spread over both workers count for POP3 in the main process
    for i in range(4):
        ok, _ = imap_login(srv.imap_port, OTHER, "wrong", source=f"127.0.0.{40 + i}")
        assert not ok
    ok, took = pop3_login(srv.pop3_port, OTHER, OTHER_PW, source="127.0.0.50")
    assert ok and took >= 0.95, took


def test_parallel_wrong_passwords_take_turns(store_server: Callable[..., Any]) -> None:
    """Six wrong passwords for one user at once, from six addresses, over two worker processes:
    three are checked at once (free), the 4th next (its delay is 0), then the 5th waits 1 s after
    it and the 6th 2 s after the 5th; never several after one shared delay."""
    srv = serve(store_server, workers=2)
    done: list[float] = []
    start = threading.Barrier(6)
    lock = threading.Lock()

    def attempt(i: int) -> None:
        start.wait()
        t0 = time.monotonic()
        ok, _ = imap_login(srv.imap_port, USER, "wrong", source=f"127.0.0.{60 + i}")
        assert not ok
        with lock:
            done.append(time.monotonic() - t0)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(done) == 6
    done.sort()
    # (answers, not checks, are timed: allow 0.2 s for a reply that took longer than a hash)
    assert done[4] - done[3] >= 0.8, done      # the 5th: 1 s after the 4th was answered
    assert done[5] - done[4] >= 1.8, done      # the 6th: 2 s after the 5th; turns, not one delay


@pytest.mark.parametrize("workers", [2])
def test_a_good_login_waits_its_turn_too(store_server: Callable[..., Any], workers: int) -> None:
    """While a key is throttled even the right password waits (no timing shortcut for a guess)."""
    srv = serve(store_server, workers=workers)
    for i in range(5):
        imap_login(srv.imap_port, USER, "wrong", source=f"127.0.0.{70 + i}")
    ok, took = imap_login(srv.imap_port, USER, PASSWORD, source="127.0.0.80")
    assert ok and took >= 1.9, took  # 5 failures: 2 s


def test_over_ipv6_loopback_the_key_is_the_64(store_server: Callable[..., Any]) -> None:
    """Through a real server on [::1] with two workers: the address reaches the gate as its /64."""
    port = _free_v6_port()
    if not port:
        pytest.skip("no IPv6 loopback")
    srv = store_server(users={USER: PASSWORD, OTHER: OTHER_PW}, imap=f"[::1]:{port}", imap_workers=2)
    imap_ready(port, host="::1")
    for name in ("a@example.test", "b@example.test", "c@example.test", "d@example.test"):
        assert not imap_login(port, name, "wrong", source="", host="::1")[0]
    ok, took = imap_login(port, OTHER, OTHER_PW, source="", host="::1")
    assert ok and took >= 0.95, took  # 4 failures of the address, over both workers: 1 s
    assert srv.log().count("login failed: address ::/64") == 4


def _free_v6_port() -> int:
    """A free port on ::1, or 0 without IPv6 loopback."""
    import socket
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return int(s.getsockname()[1])
    except OSError:
        return 0


# -- the gate's own guarantees, in one process ------------------------------------------------

def test_turns_are_freed_when_a_worker_dies_or_gives_up() -> None:
    from mailsift.store.authgate import GateServer, RemoteGate

    async def go() -> None:
        gate = LoginGate()
        hub = GateServer(gate)
        for _ in range(4):  # the user's key is throttled: attempts take turns
            gate.leave(await gate.enter("10.0.0.1", USER), False)
        gate.policy = gate.throttle.policy = type(gate.policy)(base_delay=0.01, max_delay=0.01)
        # a worker: its messages go to the hub, the hub's replies come back to it
        worker = RemoteGate(lambda msg: hub.handle("worker-1", msg, worker.received))
        hub.hello(worker.received)
        held = await worker.enter("10.0.0.2", USER)          # holds the user's turn ...
        waiting = asyncio.ensure_future(gate.enter("10.0.0.3", USER))
        await asyncio.sleep(0.1)
        assert not waiting.done()                            # ... so the next one waits
        hub.forget("worker-1")                               # the worker died
        ticket = await asyncio.wait_for(waiting, 2)          # the turn is free again
        assert gate.throttle.failures("10.0.0.2", USER) == (1, 5)  # its attempt counted as failed
        # a worker's attempt that gives up while waiting leaves nothing behind
        giving_up = asyncio.ensure_future(worker.enter("10.0.0.4", USER))
        await asyncio.sleep(0.05)
        giving_up.cancel()
        await asyncio.sleep(0.05)
        gate.leave(ticket, False)
        assert (await asyncio.wait_for(gate.enter("10.0.0.5", USER), 2)).refused is False
        assert held.id not in gate._open and len(gate._open) == 1

    asyncio.run(go())


def test_a_turn_held_too_long_is_taken_back() -> None:
    async def go() -> None:
        gate = LoginGate()
        gate.LEASE = 0.2
        for _ in range(4):
            gate.leave(await gate.enter("10.0.0.1", USER), False)
        gate.policy = gate.throttle.policy = type(gate.policy)(base_delay=0.01, max_delay=0.01)
        await gate.enter("10.0.0.2", USER)                   # never given back
        t0 = time.monotonic()
        await asyncio.wait_for(gate.enter("10.0.0.3", USER), 2)
        assert time.monotonic() - t0 >= 0.15

    asyncio.run(go())
