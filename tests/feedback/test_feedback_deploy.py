"""deploy/cron: the cron.d line and the systemd service run a `mailsift retrain` command line that
the real argument parser accepts, at a valid nightly time."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mailsift import cli

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "cron"


@pytest.fixture(autouse=True)
def retrain_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until cli.py lists it (the lead's file), register the subcommand for this test only."""
    if "retrain" not in cli.COMMANDS:
        monkeypatch.setitem(cli.COMMANDS, "retrain", "mailsift.feedback.cmd_retrain")


def parse(argv: list[str]) -> object:
    assert argv[0].endswith("/mailsift")
    return cli.build_parser().parse_args(argv[1:])


def test_cron_line() -> None:
    lines = [ln for ln in (DEPLOY / "mailsift-retrain").read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert len(lines) == 1
    minute, hour, dom, month, dow, user, *command = lines[0].split(None, 6)
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24 and (dom, month, dow) == ("*", "*", "*")
    assert user == "mailsift"  # the model's owner, never root (it loads a pickle that user writes)
    argv = shlex.split(command[0].split(">>")[0])
    args = parse(argv)
    assert args.command == "retrain" and args.config == "/etc/mailsift/mailsift.toml"  # type: ignore[attr-defined]
    assert not args.force and not args.dry_run  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["mailsift-retrain.service"])
def test_systemd_service(name: str) -> None:
    text = (DEPLOY / name).read_text()
    execs = [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith("ExecStart=")]
    assert len(execs) == 1 and "Type=oneshot" in text
    assert parse(shlex.split(execs[0])).command == "retrain"  # type: ignore[attr-defined]
    timer = (DEPLOY / "mailsift-retrain.timer").read_text()
    assert "OnCalendar=*-*-* 03:17:00" in timer and "Persistent=true" in timer
