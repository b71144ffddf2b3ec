"""The greylisting decision with a controlled clock, over the real SQLite store (and the
real Redis store for the dialogs that do not look inside the store)."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sqlite3
from pathlib import Path
from typing import Iterator

import pytest

from mailsift import __version__
from mailsift.policy.backends import GreylistStore, SqliteStore, StoreError, open_store
from mailsift.policy.greylist import Greylister
from mailsift.policy.settings import PolicySettings
from policy_helpers import request

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


_RUNNERS: list[asyncio.Runner] = []


def make(tmp_path: Path, db: str | None = None, **settings: object) -> tuple[Greylister, Clock, GreylistStore]:
    """A Greylister on a fresh store with its own event loop (the Redis client is bound to one)."""
    clock = Clock()
    db = db or f"sqlite:{tmp_path}/g.sqlite"
    store = open_store(db)
    s = dataclasses.replace(PolicySettings(db=db), **settings)
    s.validate()
    g = Greylister(s, store, clock=clock)
    runner = asyncio.Runner()
    _RUNNERS.append(runner)
    g.run = runner.run  # type: ignore[attr-defined]
    return g, clock, store


@pytest.fixture(autouse=True)
def _close_runners() -> Iterator[None]:
    yield
    while _RUNNERS:
        _RUNNERS.pop().close()


def ask(g: Greylister, **attrs: str) -> str:
    return g.run(g.decide(request(**attrs))).action  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "redis"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:{tmp_path}/g.sqlite"
    return request.getfixturevalue("redis_server").url


def test_first_sight_defers_early_retry_defers_later_retry_passes(tmp_path: Path, db: str) -> None:
    g, clock, _ = make(tmp_path, db)
    assert ask(g) == "DEFER_IF_PERMIT 4.7.1 Greylisted, retry in 300 seconds"
    clock.now += 100
    assert ask(g) == "DEFER_IF_PERMIT 4.7.1 Greylisted, retry in 200 seconds"
    clock.now += 201
    assert ask(g) == f"PREPEND X-Greylist: delayed 301 seconds by mailsift-{__version__}"
    clock.now += 10
    assert ask(g) == "DUNNO"  # a known triplet, not delayed again and no second header


def test_triplet_parts_are_independent(tmp_path: Path, db: str) -> None:
    g, clock, _ = make(tmp_path, db)
    ask(g)
    clock.now += 400
    assert ask(g).startswith("PREPEND ")
    assert ask(g, recipient="other@example.test").startswith("DEFER_IF_PERMIT")
    assert ask(g, sender="carol@sender.test").startswith("DEFER_IF_PERMIT")
    assert ask(g, client_address="203.0.113.5").startswith("DEFER_IF_PERMIT")
    # same /24, sender with an extension, recipient in capitals: the same triplet
    assert ask(g, client_address="192.0.2.99", sender="Bob+x@SENDER.test",
               recipient="Alice@Example.TEST") == "DUNNO"


def test_retry_after_the_window_starts_over(tmp_path: Path, db: str) -> None:
    g, clock, _ = make(tmp_path, db, delay=300, retry_window=3600)
    ask(g)
    clock.now += 3601
    assert ask(g) == "DEFER_IF_PERMIT 4.7.1 Greylisted, retry in 300 seconds"
    clock.now += 300
    assert ask(g).startswith("PREPEND ")


def test_passed_triplet_is_remembered_max_age_after_last_use(tmp_path: Path, db: str) -> None:
    g, clock, _ = make(tmp_path, db, max_age=10 * 86400, auto_allow=0)
    ask(g)
    clock.now += 300
    assert ask(g).startswith("PREPEND ")
    for _ in range(3):  # used every 9 days: refreshed, never expires
        clock.now += 9 * 86400
        assert ask(g) == "DUNNO"
    clock.now += 10 * 86400 + 1
    assert ask(g).startswith("DEFER_IF_PERMIT")


def test_auto_allow_counts_at_most_once_per_hour(tmp_path: Path, db: str) -> None:
    g, clock, _ = make(tmp_path, db, auto_allow=3)
    ask(g)
    clock.now += 300
    assert ask(g).startswith("PREPEND ")  # count 1
    for _ in range(5):  # many mails in the same hour: still count 1
        clock.now += 60
        assert ask(g) == "DUNNO"
    assert ask(g, recipient="new1@example.test").startswith("DEFER_IF_PERMIT")
    clock.now += 3600
    assert ask(g) == "DUNNO"  # count 2
    assert ask(g, recipient="new2@example.test").startswith("DEFER_IF_PERMIT")
    clock.now += 3600
    assert ask(g) == "DUNNO"  # count 3: the network is now allowed
    assert ask(g, recipient="new3@example.test", client_address="192.0.2.200") == "DUNNO"
    assert ask(g, recipient="new3@example.test", client_address="192.0.3.1").startswith("DEFER_IF_PERMIT")


@pytest.mark.parametrize("settings, attrs", [
    ({}, {"sasl_username": "alice", "sasl_method": "PLAIN"}),
    ({}, {"client_address": "127.0.0.1"}),
    ({}, {"client_address": "::1"}),
    ({"networks": ("192.0.2.0/28",)}, {"client_address": "192.0.2.10"}),
    ({"sender_domains": ("sender.test",)}, {"sender": "bob@mx.sender.test"}),
    ({"recipient_domains": ("example.test",)}, {}),
    ({}, {"protocol_state": "DATA"}),
    ({}, {"client_address": "unknown"}),
])
def test_never_greylisted(tmp_path: Path, settings: dict, attrs: dict) -> None:
    g, _, _ = make(tmp_path, **settings)
    assert ask(g, **attrs) == "DUNNO"


def test_exemptions_do_not_leak(tmp_path: Path) -> None:
    g, _, _ = make(tmp_path, networks=("192.0.2.0/28",), sender_domains=("sender.test",))
    assert ask(g, client_address="192.0.2.99", sender="x@other.test").startswith("DEFER_IF_PERMIT")
    assert ask(g, client_address="192.0.2.99", sender="x@notsender.test").startswith("DEFER_IF_PERMIT")


def test_loopback_is_greylisted_when_configured(tmp_path: Path) -> None:
    g, _, _ = make(tmp_path, greylist_loopback=True)
    assert ask(g, client_address="127.0.0.1").startswith("DEFER_IF_PERMIT")


def test_expired_entries_are_purged(tmp_path: Path) -> None:
    g, clock, store = make(tmp_path, retry_window=3600, max_age=7200)
    ask(g, recipient="a@example.test")
    ask(g, recipient="b@example.test")
    clock.now += 300
    ask(g, recipient="b@example.test")  # b passes: kept for max_age
    assert g.run(g.purge()) == 0
    clock.now += 3601  # a's window is over, b's passed entry lives on
    assert g.run(g.purge()) == 1
    db = sqlite3.connect(tmp_path / "g.sqlite")
    keys = [k for (k,) in db.execute("SELECT key FROM triplet")]
    assert keys == ["192.0.2.0/24\nbob@sender.test\nb@example.test"]
    clock.now += 7201
    assert g.run(g.purge()) == 2  # b and its client network
    assert db.execute("SELECT count(*) FROM triplet").fetchone() == (0,)


def test_state_survives_a_restart(tmp_path: Path) -> None:
    g, clock, store = make(tmp_path)
    ask(g)
    g.run(store.close())
    g2, clock2, _ = make(tmp_path)
    clock2.now = clock.now + 301
    assert ask(g2).startswith("PREPEND X-Greylist: delayed 301 seconds")


class BrokenStore:
    async def _fail(self, *a: object) -> None:
        raise StoreError("redis 127.0.0.1:1: connection refused")

    lookup = get_triplet = put_triplet = get_client = put_client = purge = _fail

    async def close(self) -> None:
        pass


def test_unreachable_store_answers_dunno_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    g = Greylister(PolicySettings(), BrokenStore())  # type: ignore[arg-type]
    g.run = asyncio.run  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="mailsift.policy"):
        assert ask(g) == "DUNNO"
        assert ask(g) == "DUNNO"
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "connection refused" in warnings[0].getMessage()


def test_unwritable_sqlite_answers_dunno(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    g = Greylister(PolicySettings(), SqliteStore(blocker / "sub" / "g.sqlite"))
    g.run = asyncio.run  # type: ignore[attr-defined]
    assert ask(g) == "DUNNO"


def test_store_urls_and_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        open_store("mysql://x")
    with pytest.raises(ValueError):
        open_store("sqlite:")
    for bad in ({"delay": -1}, {"retry_window": 100, "delay": 300}, {"db": "file:/x"},
                {"socket": "tcp:1"}, {"networks": ("10.0.0.0/33",)}, {"auto_allow": -1}):
        with pytest.raises(ValueError):
            dataclasses.replace(PolicySettings(), **bad).validate()
    PolicySettings().validate()
    assert re.fullmatch(r"\d+\.\d+", __version__)


def test_purge_in_batches(tmp_path: Path) -> None:
    g, clock, store = make(tmp_path, retry_window=3600)
    for i in range(25):
        ask(g, recipient=f"r{i}@example.test")
    clock.now += 3601
    assert g.run(store.purge(clock.now, batch=10)) == 25  # type: ignore[attr-defined]
    assert g.run(store.purge(clock.now, batch=10)) == 0  # type: ignore[attr-defined]
