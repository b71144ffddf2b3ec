"""Login throttling and the plaintext rule (mailsift/store/auth.py), with a fake clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from mailsift.store.auth import (
    Authenticator, LoginGate, LoginThrottle, ThrottlePolicy, acceptable_credentials, plaintext_allowed,
)
from mailsift.store.users import Users as RealUsers


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_delay_grows_per_address_and_per_user_then_ages_out() -> None:
    clock = Clock()
    t = LoginThrottle(ThrottlePolicy(free_failures=1, base_delay=1.0, max_delay=8.0, window=60), clock)
    assert t.delay("10.0.0.1", "alice") == 0
    for _ in range(2):
        t.failure("10.0.0.1", "alice")
    assert t.delay("10.0.0.1", "alice") == 1.0
    t.failure("10.0.0.1", "alice")
    assert t.delay("10.0.0.1", "alice") == 2.0
    # the same address trying another name is still slowed (per address) ...
    assert t.delay("10.0.0.1", "bob") == 2.0
    # ... and another address trying the same name too (per user)
    assert t.delay("10.0.0.2", "ALICE") == 2.0
    # an unrelated pair is not
    assert t.delay("10.0.0.2", "bob") == 0
    for _ in range(10):
        t.failure("10.0.0.1", "alice")
    assert t.delay("10.0.0.1", "alice") == 8.0  # capped
    clock.now += 61
    assert t.delay("10.0.0.1", "alice") == 0


def test_success_forgets_the_user_but_not_the_address() -> None:
    clock = Clock()
    t = LoginThrottle(ThrottlePolicy(free_failures=0, base_delay=1.0), clock)
    t.failure("10.0.0.1", "alice")
    t.success("10.0.0.9", "alice")
    assert t.delay("10.0.0.9", "alice") == 0
    assert t.delay("10.0.0.1", "carol") == 1.0


def test_address_refused_after_many_failures() -> None:
    clock = Clock()
    t = LoginThrottle(ThrottlePolicy(max_address_failures=5, window=100), clock)
    for i in range(5):
        assert not t.refused("10.0.0.1")
        t.failure("10.0.0.1", f"user{i}")
    assert t.refused("10.0.0.1") and not t.refused("10.0.0.2")
    clock.now += 101
    assert not t.refused("10.0.0.1")


def test_plaintext_rule() -> None:
    assert plaintext_allowed(secure=True, is_loopback=False, allow_plaintext_anywhere=False)
    assert plaintext_allowed(secure=False, is_loopback=True, allow_plaintext_anywhere=False)
    assert plaintext_allowed(secure=False, is_loopback=False, allow_plaintext_anywhere=True)
    assert not plaintext_allowed(secure=False, is_loopback=False, allow_plaintext_anywhere=False)


def test_acceptable_credentials() -> None:
    assert acceptable_credentials("alice@example.test", "pw")
    assert not acceptable_credentials("", "pw")
    assert not acceptable_credentials("a\nb", "pw")
    assert not acceptable_credentials("a" * 300, "pw")
    assert not acceptable_credentials("alice", "p\0w")


class Users(RealUsers):
    """The real users database, recording which names had their password checked."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.add("alice@example.test", "right")
        self.calls: list[str | None] = []

    def check(self, password: str, stored: str | None) -> bool:
        self.calls.append(stored and "alice@example.test")
        return super().check(password, stored)


def test_authenticator_sleeps_before_checking_and_hides_why(tmp_path: Path) -> None:
    policy = ThrottlePolicy(free_failures=0, base_delay=1.0, max_delay=1.0, max_address_failures=4)
    users = Users(tmp_path / "users.db")
    auth = Authenticator(users, LoginGate(policy))

    async def go() -> list[tuple[bool, float]]:
        out = []
        for user, pw in [("alice@example.test", "wrong"), ("nobody@example.test", "x"),
                         ("alice@example.test", "right")]:
            t0 = time.monotonic()
            out.append((await auth.login("10.1.1.1", user, pw), time.monotonic() - t0))
        return out

    results = asyncio.run(go())
    assert [r[0] for r in results] == [False, False, True]
    assert results[0][1] < 0.9           # first failure is free (only its scrypt)
    assert results[1][1] >= 0.99         # then every attempt waits first, even the good one
    assert results[2][1] >= 0.99
    # unknown and known users are both checked by the database: no shortcut reveals existence
    assert users.calls == ["alice@example.test", None, "alice@example.test"]


def test_refused_address_is_not_even_checked(tmp_path: Path) -> None:
    policy = ThrottlePolicy(free_failures=100, max_address_failures=2)
    users = Users(tmp_path / "users.db")
    auth = Authenticator(users, LoginGate(policy))

    async def go() -> list[bool]:
        return [await auth.login("10.2.2.2", "alice@example.test", pw) for pw in ("a", "b", "right")]

    assert asyncio.run(go()) == [False, False, False]
    assert len(users.calls) == 2
