"""The auth cache of `mailsift serve` (store/authgate.py): a repeated correct login costs no scrypt,
in POP3 and in every IMAP worker; a password change or `user del` ends it at once; a wrong
password never gets through it; it holds no password, in memory or in any file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from login_wire import cpu_seconds, imap_login, imap_ready, pop3_login
from harness.procs import free_port
from mailsift.store.auth import Authenticator
from mailsift.store.authgate import LoginGate
from mailsift.store.users import Users

USER, PASSWORD = "phone@example.test", "phone-secret-pw-7"
LOGINS = 40


def serve(store_server: Callable[..., Any], **extra: Any) -> Any:
    imap_port, pop3_port = free_port(), free_port()
    srv = store_server(users={USER: PASSWORD}, imap=f"127.0.0.1:{imap_port}", pop3=f"127.0.0.1:{pop3_port}",
                       imap_workers=2, **extra)
    srv.imap_port, srv.pop3_port = imap_port, pop3_port
    imap_ready(imap_port)
    return srv


HIT_CPU = 0.015  # server CPU seconds a cached login stays under (measured: 4 ms; scrypt: 40+ ms)
TICKS = 0.05     # /proc counts CPU in 10 ms ticks per process: the slack of one reading


def hashed(srv: Any) -> int:
    return srv.log().count("checked with the password hash")


def cpu_of(srv: Any, logins: Callable[[], None]) -> float:
    before = cpu_seconds(srv.daemon.pid)
    logins()
    return cpu_seconds(srv.daemon.pid) - before


def server_cpu_for_logins(srv: Any) -> float:
    ok, _ = imap_login(srv.imap_port, USER, PASSWORD)  # the first login is hashed either way
    assert ok
    before = cpu_seconds(srv.daemon.pid)
    for _ in range(LOGINS):
        ok, _ = imap_login(srv.imap_port, USER, PASSWORD)
        assert ok
    return cpu_seconds(srv.daemon.pid) - before


def test_a_repeated_login_costs_no_hash(store_server: Callable[..., Any]) -> None:
    """40 IMAP logins over two worker processes: with the cache the server's CPU time (main process
    and workers, from /proc) is a fraction of what the same logins cost without it."""
    cached = serve(store_server)
    cached_cpu = server_cpu_for_logins(cached)
    assert hashed(cached) == 1
    uncached = serve(store_server, auth_cache_size=0)
    uncached_cpu = server_cpu_for_logins(uncached)
    assert hashed(uncached) == LOGINS + 1
    print(f"server CPU for {LOGINS} IMAP logins: cached {cached_cpu:.2f} s, uncached {uncached_cpu:.2f} s")
    assert uncached_cpu >= LOGINS * 0.02, uncached_cpu  # scrypt: tens of ms each
    assert cached_cpu < uncached_cpu / 3, (cached_cpu, uncached_cpu)


def test_pop3_and_imap_workers_share_the_cache(store_server: Callable[..., Any]) -> None:
    srv = serve(store_server)
    assert pop3_login(srv.pop3_port, USER, PASSWORD)[0]     # main process: hashed, cached

    def logins() -> None:
        for _ in range(10):                                  # both workers: from the cache
            assert imap_login(srv.imap_port, " Phone@Example.Test. ", PASSWORD)[0]
        assert pop3_login(srv.pop3_port, USER, PASSWORD)[0]

    cpu = cpu_of(srv, logins)
    assert cpu < 11 * HIT_CPU + TICKS, cpu
    assert hashed(srv) == 1
    assert srv.log().count("answered from the auth cache") == 11


def test_a_wrong_password_after_a_cached_login_fails_and_is_hashed(store_server: Callable[..., Any]) -> None:
    srv = serve(store_server)
    assert imap_login(srv.imap_port, USER, PASSWORD)[0]
    cpu = cpu_of(srv, lambda: [imap_login(srv.imap_port, USER, PASSWORD) for _ in range(10)])
    assert cpu < 10 * HIT_CPU + TICKS, cpu  # cached
    assert hashed(srv) == 1

    def wrong_ones() -> None:
        for wrong in ("phone-secret-pw-8", PASSWORD + " ", PASSWORD.upper()):
            assert not imap_login(srv.imap_port, USER, wrong)[0]
            assert not pop3_login(srv.pop3_port, USER, wrong)[0]

    assert cpu_of(srv, wrong_ones) >= 6 * 0.02
    # every wrong password cost a full hash, as it would without the cache (no cheaper guessing)
    assert hashed(srv) == 1 + 6
    ok, _ = imap_login(srv.imap_port, USER, PASSWORD, source="127.0.0.90")  # failures are not cached
    assert ok


def test_a_password_change_or_user_del_ends_the_cached_login_at_once(store_server: Callable[..., Any],
                                                                      mailsift_bin: str) -> None:
    srv = serve(store_server)
    assert imap_login(srv.imap_port, USER, PASSWORD)[0]

    def logins() -> None:
        for _ in range(5):
            assert imap_login(srv.imap_port, USER, PASSWORD)[0]
            assert pop3_login(srv.pop3_port, USER, PASSWORD)[0]

    cpu = cpu_of(srv, logins)
    assert cpu < 10 * HIT_CPU + TICKS, cpu  # the cache answers

    def user(*args: str, stdin: str = "") -> None:
        subprocess.run([mailsift_bin, "user", "--config", str(srv.config), *args], input=stdin, text=True,
                       check=True, capture_output=True, timeout=60)

    user("passwd", USER, "--stdin", stdin="the-new-password\n")
    assert not imap_login(srv.imap_port, USER, PASSWORD, source="127.0.0.91")[0]
    assert not pop3_login(srv.pop3_port, USER, PASSWORD, source="127.0.0.92")[0]
    assert imap_login(srv.imap_port, USER, "the-new-password", source="127.0.0.93")[0]
    assert imap_login(srv.imap_port, USER, "the-new-password", source="127.0.0.93")[0]
    user("del", USER)
    assert not imap_login(srv.imap_port, USER, "the-new-password", source="127.0.0.94")[0]
    assert not pop3_login(srv.pop3_port, USER, "the-new-password", source="127.0.0.95")[0]


def test_no_file_holds_the_password(store_server: Callable[..., Any]) -> None:
    srv = serve(store_server)
    for _ in range(3):
        assert imap_login(srv.imap_port, USER, PASSWORD)[0]
        assert pop3_login(srv.pop3_port, USER, PASSWORD)[0]
    srv.stop()
    secret = PASSWORD.encode()
    for dirpath, _dirs, files in os.walk(srv.workdir):
        for name in files:
            path = Path(dirpath) / name
            if path.is_file():
                assert secret not in path.read_bytes(), path


def test_the_cache_holds_a_keyed_tag_only(tmp_path: Path) -> None:
    """In memory an entry is HMAC-SHA256(key, user, stored hash, password): no password, no hash,
    and under another process start's key (or after a password change) it matches nothing."""
    users = Users(tmp_path / "users.db")
    users.add(USER, PASSWORD)
    gate = LoginGate()
    auth = Authenticator(users, gate)

    async def login(password: str) -> tuple[bool, float]:
        t0 = time.process_time()
        ok = await auth.login("10.9.9.9", USER, password)
        return ok, time.process_time() - t0

    assert asyncio.run(login(PASSWORD))[0]
    [(who, tag)] = gate.cache.entries()
    stored = users.password_hash(USER)
    assert who == USER and stored is not None and len(tag) == 32
    assert PASSWORD.encode() not in tag and stored.encode() not in tag
    assert tag == hmac.new(gate.key or b"", b"\0".join((USER.encode(), stored.encode(), PASSWORD.encode())),
                           hashlib.sha256).digest()
    ok, cost = asyncio.run(login(PASSWORD))
    assert ok and cost < 0.01, cost  # no scrypt (about 40 ms of CPU)
    gate.key = os.urandom(32)        # what a restarted server has: the old entry is useless
    ok, cost = asyncio.run(login(PASSWORD))
    assert ok and cost > 0.01, cost


def test_the_settings_are_checked() -> None:
    from mailsift.store.settings import StoreSettings
    StoreSettings(auth_cache_size=0, auth_cache_ttl=1).validate()
    for bad in ({"auth_cache_size": -1}, {"auth_cache_ttl": 0}, {"auth_cache_ttl": 86401.0}):
        try:
            StoreSettings(**bad).validate()  # type: ignore[arg-type]
        except ValueError as exc:
            assert "auth_cache" in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
