"""Helpers for the policy tests: a policy-protocol client and `mailsift policy` daemons with
a test clock (an offset file the daemon reads at each request)."""

from __future__ import annotations

import socket
from pathlib import Path

from harness.procs import Daemon, tcp_ready, unix_ready

BASE_REQUEST = {
    "request": "smtpd_access_policy",
    "protocol_state": "RCPT",
    "protocol_name": "ESMTP",
    "client_address": "192.0.2.10",
    "client_name": "mail.sender.test",
    "reverse_client_name": "mail.sender.test",
    "helo_name": "mail.sender.test",
    "sender": "bob@sender.test",
    "recipient": "alice@example.test",
    "recipient_count": "0",
    "queue_id": "",
    "instance": "1a2b.3c4d5e.0",
    "size": "0",
    "etrn_domain": "",
    "stress": "",
    "sasl_method": "",
    "sasl_username": "",
    "sasl_sender": "",
    "ccert_subject": "",
    "ccert_issuer": "",
    "ccert_fingerprint": "",
    "encryption_protocol": "",
    "encryption_cipher": "",
    "encryption_keysize": "0",
}


def request(**overrides: str) -> dict[str, str]:
    attrs = dict(BASE_REQUEST)
    attrs.update(overrides)
    return attrs


def encode(attrs: dict[str, str]) -> bytes:
    return "".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n"


class PolicyClient:
    """One connection to the service, many requests on it, as Postfix's smtpd does."""

    def __init__(self, address: str | tuple[str, int], timeout: float = 10.0) -> None:
        if isinstance(address, tuple):
            self.sock = socket.create_connection(address, timeout=timeout)
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(address)
        self.buf = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_reply(self) -> str:
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError(f"closed by the server (had {self.buf!r})")
            self.buf += chunk
        reply, self.buf = self.buf.split(b"\n\n", 1)
        lines = reply.decode().split("\n")
        assert len(lines) == 1 and lines[0].startswith("action="), reply
        return lines[0][len("action="):]

    def ask(self, **overrides: str) -> str:
        self.send_raw(encode(request(**overrides)))
        return self.read_reply()

    def closed_by_server(self) -> bool:
        """True when the server closed the connection without sending anything."""
        data = self.sock.recv(4096)
        return data == b""

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PolicyProcess:
    """A `mailsift policy` daemon with a test clock (an offset file it reads per request)."""

    def __init__(self, mailsift_bin: str, workdir: Path, name: str, db: str,
                 listen: str | None = None, extra: list[str] | None = None,
                 config: str | None = None, clock_file: Path | None = None) -> None:
        self.workdir = workdir
        self.socket_path = workdir / f"{name}.sock"
        self.listen = listen or f"unix:{self.socket_path}"
        self.clock_file = clock_file or workdir / "clock-offset"
        argv = [mailsift_bin, "policy", "--socket", self.listen, "--db", db,
                "--clock-offset-file", str(self.clock_file), "--log-level", "DEBUG"]
        if config:
            argv[2:2] = ["--config", config]
        self.daemon = Daemon(argv + (extra or []), workdir / f"{name}.log")

    @property
    def address(self) -> str | tuple[str, int]:
        if self.listen.startswith("unix:"):
            return str(self.socket_path)
        port, host = self.listen[len("inet:"):].split("@")
        return (host, int(port))

    def ready(self) -> bool:
        a = self.address
        return tcp_ready(*a) if isinstance(a, tuple) else unix_ready(a)

    def start(self) -> "PolicyProcess":
        self.daemon.start().wait_ready(self.ready, 20, what="mailsift policy to listen")
        return self

    def advance(self, seconds: float) -> None:
        """Move the service's clock forward (shared by every process using this file)."""
        try:
            now = float(self.clock_file.read_text())
        except (OSError, ValueError):
            now = 0.0
        self.clock_file.write_text(str(now + seconds))

    def client(self) -> PolicyClient:
        return PolicyClient(self.address)

    def log(self) -> str:
        return self.daemon.log()

    def stop(self) -> int | None:
        return self.daemon.stop()


