"""Fixtures for the IMAP tests: a real `mailsift serve` with IMAP (and LMTP for deliveries) on
loopback ports, its own config, users and mail root; stopped by PID even when a test fails.

    def test_x(imap_server):
        srv = imap_server(users={"alice@example.test": "pw"})
        srv.imap_port, srv.lmtp_port, srv.mail_root, srv.deliver(user, bytes)
"""

from __future__ import annotations

import shutil
import smtplib
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness.procs import Daemon, free_port, tcp_ready
from mailsift.store.users import Users


class ImapServer:
    def __init__(self, mailsift_bin: str, workdir: Path, users: dict[str, str],
                 extra: dict[str, Any] | None = None) -> None:
        self.bin = mailsift_bin
        self.workdir = workdir
        self.mail_root = workdir / "mail"
        self.users_db = workdir / "users.db"
        self.host = "127.0.0.1"
        self.imap_port = free_port()
        self.lmtp_port = free_port()
        self.passwords = dict(users)
        settings: dict[str, Any] = {
            "mail_root": str(self.mail_root), "users": str(self.users_db),
            "lmtp": f"127.0.0.1:{self.lmtp_port}", "imap": f"127.0.0.1:{self.imap_port}",
            "pop3": "off", "pop3s": "off", "imaps": "off", "lookup": "off",
            "hostname": "imap.mailsift.test",
        }
        settings.update(extra or {})
        if settings["imap"] != "off":
            self.imap_port = int(str(settings["imap"]).rsplit(":", 1)[1])
        lines = ["[store]"]
        for k, v in settings.items():
            lines.append(f"{k} = {str(v).lower()}" if isinstance(v, bool) else
                         f"{k} = {v}" if isinstance(v, (int, float)) else f'{k} = "{v}"')
        self.config = workdir / "mailsift.toml"
        # The feedback learner in serve writes to this test's own model dir, never the repo's models/.
        lines += ["[classifier]", f'dbpath = "{workdir / "model"}"']
        self.config.write_text("\n".join(lines) + "\n")
        db = Users(self.users_db)
        for name, password in users.items():
            db.add(name, password)
        self.daemon: Daemon | None = None

    def start(self) -> "ImapServer":
        self.daemon = Daemon([self.bin, "serve", "--config", str(self.config), "--log-level", "DEBUG"],
                             self.workdir / "serve.log").start()
        self.daemon.wait_ready(lambda: tcp_ready(self.host, self.imap_port) and tcp_ready(self.host, self.lmtp_port),
                               30, what="mailsift serve (imap, lmtp)")
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def log(self) -> str:
        return self.daemon.log() if self.daemon else ""

    def deliver(self, rcpt: str, message: bytes, sender: str = "sender@example.test") -> None:
        """An LMTP delivery, as Postfix would make it."""
        with smtplib.LMTP(self.host, self.lmtp_port) as lmtp:
            lmtp.sendmail(sender, [rcpt], message)


def module_server(mailsift_bin: str, users: dict[str, str], extra: dict[str, Any] | None = None,
                  prefix: str = "mailsift-imap-") -> Iterator[ImapServer]:
    """A `mailsift serve` for one module's tests (`yield from` it in a module-scoped fixture):
    its own work directory, removed afterwards, and no internal error in its log."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    server = ImapServer(mailsift_bin, workdir, users, extra).start()
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]  # no command ended in an internal error


@pytest.fixture
def imap_server(mailsift_bin: str) -> Iterator[Callable[..., ImapServer]]:
    servers: list[ImapServer] = []
    dirs: list[Path] = []

    def make(users: dict[str, str] | None = None, extra: dict[str, Any] | None = None) -> ImapServer:
        workdir = Path(tempfile.mkdtemp(prefix="mailsift-imap-"))
        dirs.append(workdir)
        srv = ImapServer(mailsift_bin, workdir, users or {"alice@example.test": "alice-pw"}, extra)
        servers.append(srv)
        return srv.start()

    yield make
    for srv in servers:
        srv.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
