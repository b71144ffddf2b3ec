"""A private Dovecot (Debian's dovecot-imapd/-pop3d/-lmtpd) on loopback, as a reference peer.

    dc = DovecotInstance(tmp_path / "dovecot", users={"alice@example.test": "secret"})
    dc.start()                      # waits until every enabled listener answers
    dc.host, dc.imap_port, dc.pop3_port, dc.lmtp_port
    dc.maildir("alice@example.test")   # Path of that user's Maildir++ (created on first login)
    dc.log_text()
    dc.stop()                       # SIGTERM to the master's process group, by PID

It runs `dovecot -F -c WORKDIR/dovecot.conf` in the foreground: its own base_dir, state_dir and
log under WORKDIR, plaintext auth allowed (loopback only), no TLS, passwd-file users with PLAIN
passwords, mail as Maildir++ under `mail_root/DOMAIN/USER` (the same layout as mailsift's store;
also the user's home). Dovecot refuses mail access as root, so when the tests run as root the mail
is owned by Debian's `mail` user: the harness chowns `mail_root` to it, and by default puts
`mail_root` in a fresh directory under /tmp (removed at stop()), because pytest's tmp dirs are
not traversable by other users. A `mail_root` you pass must be reachable by that user. It never reads /etc/dovecot and starts no system service.
Set `imap=False` etc. to leave a listener out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from harness.procs import Daemon, free_port, tcp_ready

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


class DovecotInstance:
    def __init__(self, workdir: Path, users: dict[str, str], mail_root: Path | None = None,
                 imap: bool = True, pop3: bool = True, lmtp: bool = True,
                 extra_conf: str = "") -> None:
        self.workdir = Path(workdir).resolve()
        self.users = dict(users)
        self._own_mail_root = mail_root is None
        self.mail_root = Path(mail_root).resolve() if mail_root else Path()
        if os.getuid() == 0:
            pw = pwd.getpwnam("mail")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
        self.host = "127.0.0.1"
        self.imap_port = free_port() if imap else 0
        self.pop3_port = free_port() if pop3 else 0
        self.lmtp_port = free_port() if lmtp else 0
        self.extra_conf = extra_conf
        self.daemon: Daemon | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        return self.workdir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "dovecot.log"

    def maildir(self, user: str) -> Path:
        local, _, domain = user.partition("@")
        return self.mail_root / (domain or "localhost") / local

    def log_text(self) -> str:
        parts = []
        for p in (self.log_path, self.workdir / "stdout.log"):
            try:
                parts.append(p.read_text(errors="replace"))
            except OSError:
                pass
        return "\n".join(parts)

    # -- configuration -----------------------------------------------------------------------
    def _config(self) -> str:
        uid, gid = self.uid, self.gid
        protocols = [p for p, on in (("imap", self.imap_port), ("pop3", self.pop3_port),
                                     ("lmtp", self.lmtp_port)) if on]
        w = self.workdir
        lines = [
            f"base_dir = {w}/run",
            f"state_dir = {w}/state",
            f"log_path = {self.log_path}",
            f"info_log_path = {self.log_path}",
            f"protocols = {' '.join(protocols) or 'none'}",
            f"listen = {self.host}",
            "ssl = no",
            "disable_plaintext_auth = no",
            "auth_mechanisms = plain login",
            f"first_valid_uid = {min(uid, 500)}",
            f"first_valid_gid = {min(gid, 500)}",
            f"mail_location = maildir:{self.mail_root}/%d/%n",
            "mail_fsync = never",
            "lmtp_save_to_detail_mailbox = no",
            "recipient_delimiter = +",
            "namespace inbox {",
            "  inbox = yes",
            "  separator = .",
            "  mailbox Junk {\n    special_use = \\Junk\n    auto = subscribe\n  }",
            "  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }",
            "  mailbox Drafts {\n    special_use = \\Drafts\n    auto = subscribe\n  }",
            "  mailbox Trash {\n    special_use = \\Trash\n    auto = subscribe\n  }",
            "}",
            "passdb {",
            "  driver = passwd-file",
            f"  args = scheme=PLAIN username_format=%u {w}/passwd",
            "}",
            "userdb {",
            "  driver = static",
            f"  args = uid={uid} gid={gid} home={self.mail_root}/%d/%n",
            "}",
            "service anvil {\n  chroot =\n}",
            "service imap-login {",
            "  chroot =",
            f"  inet_listener imap {{\n    address = {self.host}\n    port = {self.imap_port}\n  }}",
            "  inet_listener imaps {\n    port = 0\n  }",
            "}",
            "service pop3-login {",
            "  chroot =",
            f"  inet_listener pop3 {{\n    address = {self.host}\n    port = {self.pop3_port}\n  }}",
            "  inet_listener pop3s {\n    port = 0\n  }",
            "}",
            "service lmtp {",
            f"  inet_listener lmtp {{\n    address = {self.host}\n    port = {self.lmtp_port}\n  }}",
            "}",
            "service imap {\n  process_limit = 1024\n}",
            "service auth {\n  user = root\n}",
            "protocol lmtp {\n  auth_username_format = %u\n}",
        ]
        return "\n".join(lines) + "\n" + self.extra_conf + "\n"

    def _passwd(self) -> str:
        for name, password in self.users.items():
            if any(c in name + password for c in ":\n"):
                raise ValueError(f"user or password with ':' or newline: {name!r}")
        return "".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self.users.items())

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "DovecotInstance":
        for d in ("run", "state"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        if self._own_mail_root:
            self.mail_root = Path(tempfile.mkdtemp(prefix="dovecot-mail-"))
        self.mail_root.mkdir(parents=True, exist_ok=True)
        self.chown_mail()
        self.conf_path.write_text(self._config())
        passwd = self.workdir / "passwd"
        passwd.write_text(self._passwd())
        passwd.chmod(0o600)
        self.daemon = Daemon([DOVECOT, "-F", "-c", str(self.conf_path)],
                             self.workdir / "stdout.log").start()
        ports = [p for p in (self.imap_port, self.pop3_port, self.lmtp_port) if p]
        try:
            self.daemon.wait_ready(lambda: all(tcp_ready(self.host, p) for p in ports), timeout,
                                   what=f"dovecot on ports {ports}")
        except (RuntimeError, TimeoutError) as exc:
            raise type(exc)(f"{exc}\n{self.log_text()}") from None
        return self

    def chown_mail(self) -> None:
        """Give everything under mail_root to the mail user (after writing Maildir files)."""
        if os.getuid() != 0:
            return
        os.chown(self.mail_root, self.uid, self.gid)
        for dirpath, dirnames, filenames in os.walk(self.mail_root):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), self.uid, self.gid)

    def append(self, user: str, folder: str, message: bytes, flags: str = "",
               date: str | None = None) -> int:
        """APPEND one message over IMAP; returns its UID (from UIDPLUS APPENDUID)."""
        import imaplib
        conn = imaplib.IMAP4(self.host, self.imap_port)
        try:
            conn.login(user, self.users[user])
            if folder.upper() != "INBOX":
                conn.create(folder)
            typ, data = conn.append(folder, f"({flags})" if flags else None,
                                    f'"{date}"' if date else None, message)
            if typ != "OK":
                raise RuntimeError(f"dovecot APPEND failed: {data!r}")
            text = data[-1].decode() if data and data[-1] else ""
            if "APPENDUID" in text:
                return int(text.split("APPENDUID", 1)[1].split("]")[0].split()[1])
            return 0
        finally:
            conn.logout()

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None
        if self._own_mail_root and self.mail_root != Path() and self.mail_root.exists():
            shutil.rmtree(self.mail_root, ignore_errors=True)

    def __enter__(self) -> "DovecotInstance":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
