"""A private Postfix instance: `postfix -c DIR start`, never touching /etc/postfix.

The test suite and `make run` both use it.

    pf = PostfixInstance(workdir, main={"smtpd_milters": "unix:/abs/milter.sock"})
    pf.start()                      # returns once smtpd answers 220
    smtplib.SMTP(pf.host, pf.smtp_port) ...
    pf.wait_delivered(1)            # Postfix's own virtual(8) delivers @example.test into pf.maildir
    pf.stop()

Everything lives under `workdir`: etc/ (main.cf, master.cf), spool/ (queue_directory), data/,
log/postfix.log (maillog_file), mail/sink/ (the Maildir virtual(8) writes, owned by nobody).
smtpd and the other services run NOT chrooted here, so milter, policy and LMTP unix sockets
are plain absolute paths. Postfix's processes run as the `postfix` user: every directory on the
path to a socket must be traversable by it (use `make_workdir()`, which makes a 0755 directory
under /tmp, rather than pytest's 0700 tmp_path) and the socket itself must be writable by it
(chmod 0666 or chown postfix).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from mailsift.localstack.procs import free_port, kill_pidfile, wait_for

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"

# Services of Debian's master.cf that a test instance needs, all unchrooted.
_MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def make_workdir(prefix: str = "mailsift-test-") -> Path:
    """A fresh directory under /tmp that the postfix user can traverse (mode 0755)."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


class PostfixInstance:
    """One private Postfix: its own config, queue, data and log directories and smtpd port."""

    def __init__(self, workdir: Path | str, main: dict[str, str] | None = None,
                 master_extra: Iterable[str] = (), smtp_port: int | None = None,
                 host: str = "127.0.0.1") -> None:
        self.workdir = Path(workdir)
        self.host = host
        self.smtp_port = smtp_port or free_port(host)
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "spool"
        self.data_dir = self.workdir / "data"
        self.log_dir = self.workdir / "log"
        self.mail_base = self.workdir / "mail"
        self.maildir = self.mail_base / "sink"
        self.log_file = self.log_dir / "postfix.log"
        self._main_extra = dict(main or {})
        self._master_extra = list(master_extra)
        self.running = False

    # -- configuration -------------------------------------------------------------------
    def main_settings(self) -> dict[str, str]:
        nobody = pwd.getpwnam("nobody")
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "myhostname": "mx.mailsift.test",
            "mydomain": "mailsift.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "inet_interfaces": "loopback-only",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": "",
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "smtpd_banner": "$myhostname ESMTP",
            "biff": "no",
            "append_dot_mydomain": "no",
            "smtputf8_enable": "no",
            "virtual_mailbox_domains": "example.test",
            "virtual_mailbox_base": str(self.mail_base),
            "virtual_mailbox_maps": "static:sink/",
            "virtual_uid_maps": f"static:{nobody.pw_uid}",
            "virtual_gid_maps": f"static:{nobody.pw_gid}",
            "default_transport": "error:no external delivery from the test instance",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": f"/var, /dev/stdout, {self.log_dir}",
            # Quick retries so tests that need a retry do not wait minutes.
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
        }
        settings.update(self._main_extra)
        return settings

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        main = "".join(f"{k} = {v}\n" for k, v in self.main_settings().items())
        (self.config_dir / "main.cf").write_text(main)
        smtpd = f"{self.host}:{self.smtp_port} inet  n       -       n       -       -       smtpd\n"
        extra = "".join(line.rstrip("\n") + "\n" for line in self._master_extra)
        (self.config_dir / "master.cf").write_text(smtpd + _MASTER_SERVICES + extra)

    def postconf(self, settings: dict[str, str]) -> None:
        """Change main.cf settings (call reload() when running)."""
        self._main_extra.update(settings)
        if self.config_dir.exists():
            self._write_config()

    # -- lifecycle -----------------------------------------------------------------------
    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60)

    def start(self, timeout: float = 30.0) -> "PostfixInstance":
        for d in (self.queue_dir, self.data_dir, self.log_dir, self.mail_base):
            d.mkdir(parents=True, exist_ok=True)
        nobody = pwd.getpwnam("nobody")
        self.maildir.mkdir(parents=True, exist_ok=True)
        for d in (self.maildir, *(self.maildir / s for s in ("tmp", "new", "cur"))):
            d.mkdir(exist_ok=True)
            os.chown(d, nobody.pw_uid, nobody.pw_gid)
        os.chown(self.mail_base, nobody.pw_uid, nobody.pw_gid)
        pf = pwd.getpwnam("postfix")
        os.chown(self.data_dir, pf.pw_uid, pf.pw_gid)
        self._write_config()
        self._run(POSTFIX, "-c", str(self.config_dir), "set-permissions")
        res = self._run(POSTFIX, "-c", str(self.config_dir), "start", check=False)
        if res.returncode != 0:
            raise RuntimeError(f"postfix start failed: {res.stdout}{res.stderr}\n{self.log_text()}")
        self.running = True
        wait_for(self._banner, timeout, what=f"postfix smtpd on {self.host}:{self.smtp_port}")
        return self

    def _banner(self) -> bool:
        with socket.create_connection((self.host, self.smtp_port), timeout=2) as s:
            data = s.recv(512)
            s.sendall(b"QUIT\r\n")
            return data.startswith(b"220")

    def reload(self) -> None:
        self._write_config()
        self._run(POSTFIX, "-c", str(self.config_dir), "reload")

    def stop(self) -> None:
        if not self.running:
            return
        self._run(POSTFIX, "-c", str(self.config_dir), "stop", check=False)
        pidfile = self.queue_dir / "pid" / "master.pid"
        kill_pidfile(pidfile, timeout=10)
        self.running = False

    def cleanup(self) -> None:
        """Stop and remove the whole work directory."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "PostfixInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queue and delivery --------------------------------------------------------------
    def queue(self) -> list[dict]:
        """The messages still queued (postqueue -j records: queue_id, queue_name, recipients...)."""
        res = self._run(POSTQUEUE, "-c", str(self.config_dir), "-j", check=False)
        return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]

    def queue_ids(self) -> list[str]:
        return [m["queue_id"] for m in self.queue()]

    def flush(self) -> None:
        """Attempt delivery of everything queued now (postqueue -f)."""
        self._run(POSTQUEUE, "-c", str(self.config_dir), "-f", check=False)

    def delivered_paths(self) -> list[Path]:
        new = self.maildir / "new"
        return sorted(new.iterdir(), key=lambda p: p.stat().st_mtime_ns) if new.exists() else []

    def delivered(self) -> list[bytes]:
        return [p.read_bytes() for p in self.delivered_paths()]

    def wait_delivered(self, count: int, timeout: float = 30.0) -> list[bytes]:
        """Wait until at least `count` messages sit in the sink Maildir; return them all."""
        wait_for(lambda: len(self.delivered_paths()) >= count, timeout,
                 what=f"{count} message(s) delivered by postfix")
        return self.delivered()

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def send(self, mail_from: str, rcpts: list[str], data: bytes,
             helo: str = "client.mailsift.test") -> dict:
        """Submit one message over SMTP; returns smtplib's refused-recipients dict."""
        with smtplib.SMTP(self.host, self.smtp_port, local_hostname=helo, timeout=60) as smtp:
            return smtp.sendmail(mail_from, rcpts, data)


def wait_queue_empty(pf: PostfixInstance, timeout: float = 60.0) -> None:
    wait_for(lambda: not pf.queue(), timeout, what="postfix queue to drain")
