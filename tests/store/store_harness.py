"""`mailsift serve` as the store's tests start it: its own config, users db and mail root."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.procs import Daemon, free_port, tcp_ready, unix_ready
from mailsift.store.users import Users


class StoreServer:
    def __init__(self, mailsift_bin: str, workdir: Path, users: dict[str, str], lmtp: str = "tcp",
                 extra: dict[str, Any] | None = None) -> None:
        self.bin = mailsift_bin
        self.workdir = workdir
        self.mail_root = workdir / "mail"
        self.users_db = workdir / "users.db"
        self.log_path = workdir / "serve.log"
        if lmtp == "tcp":
            self.lmtp_addr: Any = ("127.0.0.1", free_port())
            lmtp_value = f"127.0.0.1:{self.lmtp_addr[1]}"
        else:
            self.lmtp_addr = str(workdir / "lmtp.sock")
            lmtp_value = f"unix:{self.lmtp_addr}"
        self.lookup_path = str(workdir / "map.sock")
        settings: dict[str, Any] = {
            "mail_root": str(self.mail_root), "users": str(self.users_db), "lmtp": lmtp_value,
            "pop3": "off", "pop3s": "off", "imap": "off", "imaps": "off",
            "lookup": f"unix:{self.lookup_path}", "hostname": "store.mailsift.test",
        }
        settings.update(extra or {})
        self.config = workdir / "mailsift.toml"
        lines = ["[store]"]
        for k, v in settings.items():
            if isinstance(v, bool):
                lines.append(f"{k} = {'true' if v else 'false'}")
            elif isinstance(v, (int, float)):
                lines.append(f"{k} = {v}")
            else:
                lines.append(f'{k} = "{v}"')
        # The feedback learner in serve writes to this test's own model dir, never the repo's models/.
        lines += ["[classifier]", f'dbpath = "{workdir / "model"}"']
        self.config.write_text("\n".join(lines) + "\n")
        for name, password in users.items():
            self.add_user(name, password)
        self.daemon: Daemon | None = None
        self.env: dict[str, str] | None = None  # the daemon's environment (None: the test's own)

    def add_user(self, name: str, password: str, cli: bool = False) -> None:
        """Add a user (in-process through the Users API, or with cli=True through `mailsift user add`)."""
        if cli:
            subprocess.run([self.bin, "user", "--config", str(self.config), "add", name, "--stdin"],
                           input=password + "\n", text=True, check=True, capture_output=True, timeout=60)
        else:
            Users(self.users_db).add(name, password)

    def ready(self) -> bool:
        if isinstance(self.lmtp_addr, tuple):
            ok = tcp_ready(*self.lmtp_addr)
        else:
            ok = unix_ready(self.lmtp_addr)
        return ok and unix_ready(self.lookup_path)

    def start(self, timeout: float = 30.0) -> "StoreServer":
        self.daemon = Daemon([self.bin, "serve", "--config", str(self.config), "--log-level", "DEBUG"],
                             self.log_path, env=self.env).start()
        self.daemon.wait_ready(self.ready, timeout, what="mailsift serve")
        return self

    def stop(self) -> int | None:
        return self.daemon.stop() if self.daemon else None

    def kill9(self) -> None:
        if self.daemon:
            self.daemon.kill9()

    def restart(self) -> "StoreServer":
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.daemon.log() if self.daemon else ""

    def maildir(self, user: str) -> Path:
        local, domain = user.split("@")
        return self.mail_root / domain / local


@contextmanager
def inside_another_thread(enter: Callable[[], ContextManager[Any]]) -> Iterator[None]:
    """For the block, another thread sits inside the context manager `enter()` makes."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with enter():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert inside.wait(10), "the other thread got in"
        yield
    finally:
        release.set()
        t.join()


def held(mailbox: Any) -> ContextManager[None]:
    """`mailbox` held exclusively by another thread for the block (a mailbox of another Store
    stands for another process: its own lock file descriptor)."""
    return inside_another_thread(mailbox.exclusive)
