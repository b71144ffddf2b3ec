"""Fixtures for the store's tests: a `mailsift serve` daemon with its own config, users and mail root.

    def test_x(store_server):
        srv = store_server(users={"alice@example.test": "pw"}, lmtp="tcp")   # started, ready
        srv.lmtp_addr  -> ("127.0.0.1", port) or "/abs/path.sock"
        srv.mail_root, srv.users_db, srv.config, srv.daemon (harness.procs.Daemon)
        srv.restart(); srv.kill9(); srv.start()

Everything lives in a 0755 directory under /tmp (Postfix's processes must reach the sockets) and
is removed afterwards; every daemon is stopped by PID even when the test fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.postfix import make_workdir
from store_harness import StoreServer


@pytest.fixture
def store_server(mailsift_bin: str) -> Callable[..., StoreServer]:
    made: list[StoreServer] = []
    dirs: list[Path] = []

    def factory(users: dict[str, str] | None = None, lmtp: str = "tcp", start: bool = True,
                **extra: Any) -> StoreServer:
        wd = make_workdir("mailsift-store-")
        dirs.append(wd)
        srv = StoreServer(mailsift_bin, wd, users if users is not None else {"alice@example.test": "pw-alice"},
                          lmtp, extra)
        made.append(srv)
        return srv.start() if start else srv

    yield factory
    for srv in made:
        try:
            srv.stop()
        except Exception:
            pass
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
