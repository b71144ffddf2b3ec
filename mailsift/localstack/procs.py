"""Free ports, readiness polling and daemons stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
             what: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; raise TimeoutError after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - polling
            last_exc = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc!r})" if last_exc else ""))


def tcp_ready(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_ready(path: str | Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(path))
            return True
    except OSError:
        return False


class Daemon:
    """A foreground process we started; stopped by PID (SIGTERM, then SIGKILL)."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None) -> None:
        self.argv = list(argv)
        self.log_path = Path(log)
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "Daemon":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=self.env, cwd=self.cwd,
                                     start_new_session=True)
        logf.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, ready: Callable[[], object], timeout: float = 30.0,
                   what: str | None = None) -> "Daemon":
        """Poll `ready` until it is true. If the process exits first, or `timeout` passes, stop
        it and raise (RuntimeError, TimeoutError) with the tail of its log, so a failed start
        fails at once and says why."""
        what = what or Path(self.argv[0]).name
        deadline = time.monotonic() + timeout
        while True:
            try:
                if ready():
                    return self
            except Exception:  # noqa: BLE001 - polling: not ready yet
                pass
            if not self.alive():
                code = self.stop()
                raise RuntimeError(f"{what} exited with status {code} during start:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def kill9(self) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(10)  # type: ignore[union-attr]

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode


def kill_pidfile(path: str | Path, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Stop a daemon that wrote its PID to a file (clamd, redis when daemonised)."""
    try:
        pid = int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
