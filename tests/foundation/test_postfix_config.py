"""`mailsift postfix-config` prints postconf commands that Postfix itself accepts."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def test_printed_commands_apply_to_a_private_postfix_config(tmp_path: Path, mailsift_bin: str) -> None:
    out = subprocess.run([mailsift_bin, "postfix-config"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    commands = [ln for ln in out.splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands and all(c.startswith("postconf -e ") for c in commands)
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "main.cf").write_text("compatibility_level = 3.6\n")
    (etc / "master.cf").write_bytes(Path("/etc/postfix/master.cf").read_bytes())
    for command in commands:
        argv = shlex.split(command)
        subprocess.run(["/usr/sbin/postconf", "-c", str(etc), *argv[1:]], check=True, timeout=30)
    applied = subprocess.run(["/usr/sbin/postconf", "-c", str(etc), "-n"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
    settings = dict(line.split(" = ", 1) for line in applied.splitlines())
    assert settings["smtpd_milters"] == "unix:/mailsift/milter.sock"
    assert settings["milter_default_action"] == "tempfail"
    assert settings["virtual_transport"].startswith("lmtp:unix:")
    restrictions = [r.strip() for r in settings["smtpd_recipient_restrictions"].split(",")]
    assert restrictions.index("reject_unauth_destination") < next(
        i for i, r in enumerate(restrictions) if r.startswith("check_policy_service"))
    # No warnings about unknown parameters: every name we print is one Postfix knows.
    check = subprocess.run(["/usr/sbin/postconf", "-c", str(etc), "-n"], capture_output=True,
                           text=True, timeout=30)
    assert "unused parameter" not in check.stderr


def test_one_part_only(mailsift_bin: str) -> None:
    out = subprocess.run([mailsift_bin, "postfix-config", "--part", "policy"], capture_output=True,
                         text=True, timeout=60, check=True).stdout
    assert "check_policy_service" in out and "smtpd_milters" not in out
