"""Shared by the POP3 tests: a real `mailsift serve` (subprocess, free ports, temp mail root,
a user made with `mailsift user add --stdin`, a certificate from `mailsift cert`) and a small
line-level POP3 client for transcripts. No tests here."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from harness.procs import Daemon, free_port, tcp_ready

PASSWORD = "correct horse battery staple"
USER = "alice@example.test"
OTHER = "bob@example.test"
CERT_HOST = "mail.example.test"
DATA = Path(__file__).resolve().parent.parent / "data" / "pop3"


@dataclass
class Pop3Server:
    """One `mailsift serve` with pop3 (plain + STLS) and pop3s listeners on loopback."""

    workdir: Path
    mailsift_bin: str
    extra: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    pop3_port: int = 0
    pop3s_port: int = 0
    lmtp_port: int = 0          # 0: no LMTP listener; -1: pick a free port at setup
    daemon: Daemon | None = None
    starts: int = 0

    @property
    def mail_root(self) -> Path:
        return self.workdir / "mail"

    @property
    def users_db(self) -> Path:
        return self.workdir / "users.db"

    @property
    def config(self) -> Path:
        return self.workdir / "mailsift.toml"

    @property
    def cert(self) -> Path:
        return self.workdir / "tls" / f"{CERT_HOST}.crt"

    @property
    def key(self) -> Path:
        return self.workdir / "tls" / f"{CERT_HOST}.key"

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.mailsift_bin, *args], input=stdin, capture_output=True, text=True,
                              timeout=120)

    def setup(self) -> "Pop3Server":
        self.workdir.mkdir(parents=True, exist_ok=True)
        r = self.run("cert", CERT_HOST, "--out", str(self.workdir / "tls"))
        assert r.returncode == 0, r.stderr
        self.pop3_port, self.pop3s_port = free_port(), free_port()
        if self.lmtp_port < 0:
            self.lmtp_port = free_port()
        lines = [
            "[store]",
            f'mail_root = "{self.mail_root}"',
            f'users = "{self.users_db}"',
            f'lmtp = "{self.host}:{self.lmtp_port}"' if self.lmtp_port else 'lmtp = "off"',
            'lookup = "off"',
            'imap = "off"',
            'imaps = "off"',
            f'pop3 = "{self.host}:{self.pop3_port}"',
            f'pop3s = "{self.host}:{self.pop3s_port}"',
            f'tls_cert = "{self.cert}"',
            f'tls_key = "{self.key}"',
            f'hostname = "{CERT_HOST}"',
        ]
        lines += [f"{k} = {v}" for k, v in self.extra.items()]
        # The feedback learner in serve writes to this test's own model dir, never the repo's models/.
        lines += ["[classifier]", f'dbpath = "{self.workdir / "model"}"']
        self.config.write_text("\n".join(lines) + "\n")
        for user in (USER, OTHER):
            self.add_user(user, PASSWORD)
        return self

    def add_user(self, name: str, password: str) -> None:
        r = self.run("user", "--config", str(self.config), "add", name, "--stdin", stdin=password + "\n")
        assert r.returncode == 0, r.stderr

    def start(self) -> "Pop3Server":
        self.starts += 1
        self.daemon = Daemon([self.mailsift_bin, "serve", "--config", str(self.config), "--log-level", "DEBUG"],
                             self.workdir / f"serve.{self.starts}.log").start()
        self.daemon.wait_ready(lambda: tcp_ready(self.host, self.pop3_port) and tcp_ready(self.host, self.pop3s_port),
                               30, what="mailsift serve POP3 listeners")
        return self

    def stop(self) -> int | None:
        if self.daemon is None:
            return None
        rc = self.daemon.stop()
        self.daemon = None
        return rc

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("serve.*.log")))

    def deliver(self, user: str, messages: list[bytes]) -> None:
        """Put mail in with the store API. The store belongs to one process, so the server is
        stopped meanwhile and started again (which also proves UIDLs survive restarts)."""
        running = self.daemon is not None
        if running:
            self.stop()
        code = ("import sys, pickle\n"
                "from mailsift.store.api import Store\n"
                "root, user, msgs = pickle.load(sys.stdin.buffer)\n"
                "s = Store(root); box = s.mailbox(user)\n"
                "for m in msgs: box.deliver(m, folder='INBOX')\n"
                "s.close()\n")
        import pickle
        r = subprocess.run([sys.executable, "-c", code], input=pickle.dumps((str(self.mail_root), user, messages)),
                           capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        if running:
            self.start()

    def inbox_files(self, user: str = USER) -> list[Path]:
        local, domain = user.split("@")
        base = self.mail_root / domain / local
        return sorted(p for sub in ("new", "cur") for p in (base / sub).iterdir())

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cert))
        return ctx


@pytest.fixture()
def pop3_server(tmp_path: Path, mailsift_bin: str) -> Iterator[Pop3Server]:
    srv = Pop3Server(tmp_path / "srv", mailsift_bin).setup()
    try:
        yield srv
    finally:
        srv.stop()


class Pop3Client:
    """A raw POP3 line client for transcripts: send exact bytes, read exact replies."""

    def __init__(self, host: str, port: int, tls: ssl.SSLContext | None = None, timeout: float = 20.0) -> None:
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock: socket.socket = tls.wrap_socket(raw, server_hostname=CERT_HOST) if tls else raw
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self.buf += chunk
        return True

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise ConnectionError(f"closed; buffered {self.buf!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def multiline(self) -> list[bytes]:
        """The body of a multi-line reply, unstuffed, without the terminator."""
        out = []
        while True:
            line = self.line()
            if line == b".":
                return out
            out.append(line[1:] if line.startswith(b".") else line)

    def cmd(self, line: str | bytes) -> bytes:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.line()

    def closed(self, timeout: float = 10.0) -> bool:
        """True when the server closed the connection (after whatever is buffered)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname=CERT_HOST)

    def login(self, user: str = USER, password: str = PASSWORD) -> bytes:
        assert self.cmd(f"USER {user}").startswith(b"+OK")
        return self.cmd(f"PASS {password}")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
