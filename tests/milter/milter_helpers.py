"""Small messages for the milter's tests."""

from __future__ import annotations

import email
import email.message
import email.policy
import re
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

from harness.procs import Daemon, unix_ready


def build_message(test_id: str, subject: str, text: str = "Please find the file attached.\r\n",
                  attachment: tuple[str, bytes] | None = None, size_pad: int = 0) -> bytes:
    msg = MIMEMultipart() if attachment else MIMEText(text + "x" * size_pad, "plain", "us-ascii")
    if attachment:
        msg.attach(MIMEText(text, "plain", "us-ascii"))
        name, data = attachment
        part = MIMEApplication(data, Name=name)
        part["Content-Disposition"] = f'attachment; filename="{name}"'
        msg.attach(part)
    msg["From"] = "Sender <sender@outside.test>"
    msg["To"] = "user@example.test"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{test_id}@outside.test>"
    msg["X-Test-Id"] = test_id
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def corpus_files(corpora: Path, folder: str) -> list[Path]:
    return sorted(p for p in (corpora / folder).iterdir() if p.is_file())


class MilterProcess:
    """`mailsift milter` started as a user runs it."""

    def __init__(self, mailsift_bin: str, workdir: Path, args: list[str], name: str = "milter") -> None:
        self.socket = workdir / name / "milter.sock"
        self.args = args
        self.mailsift_bin = mailsift_bin
        self.daemon: Daemon | None = None
        self.log_path = workdir / f"{name}.log"

    @property
    def spec(self) -> str:
        return f"unix:{self.socket}"

    def start(self) -> "MilterProcess":
        argv = [self.mailsift_bin, "milter", "--socket", self.spec, *self.args]
        self.daemon = Daemon(argv, self.log_path).start()
        self.daemon.wait_ready(lambda: unix_ready(self.socket), 30, what="milter socket")
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            self.daemon.stop()

    def kill9(self) -> None:
        if self.daemon is not None:
            self.daemon.kill9()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def milter_main(milter: MilterProcess, **extra: str) -> dict[str, str]:
    """main.cf settings for a test Postfix: exactly what `mailsift postfix-config` prints,
    with the test's own socket (the test Postfix is not chrooted) and no local submission."""
    from mailsift.config import Config
    from mailsift.milter.postfix import postconf_lines

    settings: dict[str, str] = {}
    for line in postconf_lines(Config()):
        m = re.fullmatch(r"postconf -e '([a-z_]+) = (.*)'", line)
        if m:
            settings[m.group(1)] = m.group(2)
    assert settings["milter_default_action"] == "tempfail"
    settings["smtpd_milters"] = milter.spec
    settings["non_smtpd_milters"] = ""
    settings.update(extra)
    return settings


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def header_values(msg: email.message.Message, name: str) -> list[str]:
    return [str(v) for v in (msg.get_all(name) or [])]


def relay_main(mx) -> dict[str, str]:
    """main.cf of a Postfix that queues mail for example.test and relays it to `mx`, retrying
    as a sender's MTA would."""
    return {
        "myhostname": "relay.mailsift.test",
        "virtual_mailbox_domains": "",
        "relay_domains": "example.test",
        "relayhost": f"[{mx.host}]:{mx.smtp_port}",
        "default_transport": "smtp",
        "smtp_tls_security_level": "none",
    }
