"""A private redis-server for tests: a free loopback port, its own directory, no persistence
(or, with persist=True, an append-only file fsynced at every write, so a server killed and
started again on the same port and directory has lost nothing), in the foreground and stopped
by PID; ready when it answers PING.

    r = RedisServer(workdir).start()
    r.url            # redis://127.0.0.1:PORT/0
    r.stop()
"""

from __future__ import annotations

import socket
from pathlib import Path

from harness.procs import Daemon, free_port

REDIS_SERVER = "/usr/bin/redis-server"


def ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    except OSError:
        return False


class RedisServer:
    def __init__(self, workdir: Path | str, host: str = "127.0.0.1", port: int | None = None,
                 password: str = "", persist: bool = False) -> None:
        self.workdir = Path(workdir)
        self.password = password
        self.persist = persist
        self.host = host
        self.port = port or free_port(host)
        self.daemon: Daemon | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.workdir), "--save", "",
                "--appendonly", "yes" if self.persist else "no", "--appendfsync", "always",
                "--daemonize", "no", "--protected-mode", "yes", "--unixsocket", "",
                "--logfile", ""]
        if self.password:
            argv += ["--requirepass", self.password]
        self.daemon = Daemon(argv, self.workdir / "redis.log").start()
        self.daemon.wait_ready(lambda: ping(self.host, self.port), timeout,
                               what=f"redis-server on {self.host}:{self.port}")
        return self

    def alive(self) -> bool:
        return self.daemon is not None and self.daemon.alive()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def kill9(self) -> None:
        if self.daemon is not None:
            self.daemon.kill9()

    def log(self) -> str:
        return self.daemon.log() if self.daemon else ""

    def __enter__(self) -> "RedisServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

