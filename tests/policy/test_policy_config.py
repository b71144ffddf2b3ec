"""[policy] configuration, `mailsift postfix-config` lines, idle connections."""

from __future__ import annotations

import shlex
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import wait_for
from mailsift.config import ConfigError, parse_config
from mailsift.policy.postfix import policy_service_endpoint
from policy_helpers import PolicyClient, PolicyProcess


@pytest.mark.parametrize("socket, endpoint", [
    ("unix:/var/spool/postfix/private/mailsift-policy", "unix:private/mailsift-policy"),
    ("unix:/run/mailsift/policy.sock", "unix:/run/mailsift/policy.sock"),
    ("inet:10040@127.0.0.1", "inet:127.0.0.1:10040"),
    ("inet:10040", "inet:127.0.0.1:10040"),
    ("inet:[::1]:10040", "inet:[::1]:10040"),
])
def test_postfix_endpoint(socket: str, endpoint: str) -> None:
    assert policy_service_endpoint(socket) == endpoint


def test_postfix_config_command_prints_the_policy_line(mailsift_bin: str, workdir: Path) -> None:
    cfg = workdir / "m.toml"
    cfg.write_text('[policy]\nsocket = "inet:10040@127.0.0.1"\n')
    out = subprocess.run([mailsift_bin, "postfix-config", "--config", str(cfg), "--part", "policy"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    commands = [shlex.split(l) for l in out.splitlines() if l and not l.startswith("#")]
    assert all(c[:2] == ["postconf", "-e"] and len(c) == 3 for c in commands), out
    settings = dict(c[2].split(" = ", 1) for c in commands)
    parts = [p.strip() for p in settings["smtpd_recipient_restrictions"].split(",")]
    assert parts.index("reject_unauth_destination") < parts.index("check_policy_service inet:127.0.0.1:10040")
    assert settings["smtpd_policy_service_default_action"].startswith("451 4.")


def test_config_file_values_and_errors() -> None:
    c = parse_config({"policy": {"delay": 60, "networks": ["192.0.2.0/24"], "auto_allow": 0,
                                 "db": "redis://127.0.0.1:6379/1", "socket_mode": "0660"}})
    assert c.policy.delay == 60 and c.policy.networks == ("192.0.2.0/24",) and c.policy.socket_mode == "0660"
    for bad in ({"delay": "soon"}, {"networks": ["192.0.2.0/33"]}, {"db": "postgres://x"},
                {"socket": "/tmp/x"}, {"greylist": True}, {"socket_mode": "1777"}):
        with pytest.raises(ConfigError):
            parse_config({"policy": bad})


def test_idle_connections_are_closed(start_policy: Callable[..., PolicyProcess], workdir: Path) -> None:
    cfg = workdir / "idle.toml"
    cfg.write_text("[policy]\nidle_timeout = 1\n")
    p = start_policy(config=str(cfg))
    with p.client() as c:
        assert c.ask().startswith("DEFER_IF_PERMIT")
        t0 = time.monotonic()
        c.sock.settimeout(10)
        assert c.closed_by_server()
        assert time.monotonic() - t0 < 5
    wait_for(lambda: "idle for 1s" in p.log(), 10, what="the idle close to be logged")


def test_started_as_root_it_runs_as_the_configured_user(start_policy: Callable[..., PolicyProcess],
                                                        workdir: Path) -> None:
    import os
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    cfg = workdir / "user.toml"
    cfg.write_text('[policy]\nuser = "nobody"\n')
    p = start_policy(config=str(cfg), db=f"sqlite:{workdir}/state/greylist.sqlite")
    with p.client() as c:
        assert c.ask().startswith("DEFER_IF_PERMIT")  # the store works as nobody
        assert c.ask().startswith("DEFER_IF_PERMIT 4.7.1 Greylisted, retry in ")
    status = Path(f"/proc/{p.daemon.pid}/status").read_text()
    uids = next(l for l in status.splitlines() if l.startswith("Uid:")).split()[1:]
    assert set(map(int, uids)) == {nobody.pw_uid}
    assert (workdir / "state").stat().st_uid == nobody.pw_uid
    assert (workdir / "state" / "greylist.sqlite").stat().st_mode & 0o777 == 0o600
    assert "store failed" not in p.log()


def test_connections_beyond_max_are_closed_others_unaffected(start_policy: Callable[..., PolicyProcess],
                                                             workdir: Path) -> None:
    cfg = workdir / "max.toml"
    cfg.write_text("[policy]\nmax_connections = 2\n")
    p = start_policy(config=str(cfg))
    # (the readiness probe's connection may still count for a moment: retry until served)
    a = wait_for(lambda: _served_client(p, "a@example.test"), 10, what="client a served")
    b = wait_for(lambda: _served_client(p, "b@example.test"), 10, what="client b served")
    try:
        with p.client() as third:
            assert third.closed_by_server()
        wait_for(lambda: "closing new ones" in p.log(), 10, what="the refusal to be logged")
        assert a.ask(recipient="a2@example.test").startswith("DEFER_IF_PERMIT")
    finally:
        a.close()
        b.close()
    # once the others are gone, new connections are served again
    wait_for(lambda: _served(p), 10, what="a new connection to be served")


def _served_client(p: PolicyProcess, rcpt: str) -> PolicyClient | None:
    c = p.client()
    try:
        assert c.ask(recipient=rcpt).startswith("DEFER_IF_PERMIT")
        return c
    except (ConnectionError, OSError):
        c.close()
        return None


def _served(p: PolicyProcess) -> bool:
    try:
        with p.client() as c:
            return c.ask(recipient="c@example.test").startswith("DEFER_IF_PERMIT")
    except ConnectionError:
        return False
