"""The IMAP worker processes run the main process's mailsift, whatever the current directory
holds: a `mailsift` package there (a checkout of another version, or a directory others can
write to) is never imported by a worker (`python -m` would put the current directory first)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.procs import Daemon, tcp_ready, wait_for

from imap.conftest import ImapServer
from imap.test_workers import ALICE, ALICE_PW, worker_pids
from imap.wire import Wire

pytestmark = pytest.mark.integration


@pytest.fixture
def decoy_cwd_server(mailsift_bin: str) -> Iterator[tuple[ImapServer, Path]]:
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-workers-cwd-"))
    cwd = workdir / "cwd"
    marker = workdir / "decoy-imported"
    (cwd / "mailsift" / "serve").mkdir(parents=True)
    decoy = f"open({str(marker)!r}, 'a').write('imported\\n')\nraise SystemExit('decoy mailsift imported')\n"
    (cwd / "mailsift" / "__init__.py").write_text(decoy)
    (cwd / "mailsift" / "serve" / "__init__.py").write_text("")
    (cwd / "mailsift" / "serve" / "workers_main.py").write_text(decoy)
    server = ImapServer(mailsift_bin, workdir, {ALICE: ALICE_PW}, {"imap_workers": 2})
    server.daemon = Daemon([server.bin, "serve", "--config", str(server.config), "--log-level", "DEBUG"],
                           workdir / "serve.log", cwd=cwd).start()
    server.daemon.wait_ready(lambda: tcp_ready(server.host, server.imap_port), 30, what="mailsift serve (imap)")
    yield server, marker
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_workers_ignore_a_mailsift_package_in_the_current_directory(
        decoy_cwd_server: tuple[ImapServer, Path]) -> None:
    srv, marker = decoy_cwd_server
    wait_for(lambda: "imap worker 1 started" in srv.log(), 20, what="two imap workers started")
    w = Wire(srv.host, srv.imap_port)
    try:
        assert w.greeting.startswith(b"* OK"), w.greeting
        w.login(ALICE, ALICE_PW)
        _untagged, done = w.command("SELECT INBOX")
        assert done.startswith(b"OK") or b" OK " in done, done
    finally:
        w.close()
    assert len(worker_pids(srv)) == 2
    assert not marker.exists(), "a worker imported the mailsift package of the current directory"
    log = srv.log()
    assert "ended with status" not in log and "Traceback" not in log, log[-3000:]
