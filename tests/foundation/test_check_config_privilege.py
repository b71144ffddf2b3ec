"""`mailsift check-config` judges ownership the way the daemons now work: the user database is
root's and only read by run_as; the model is loaded as [milter] user, as the milter loads it."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from harness.sysuser import system_user
from test_check_config import Setup, services, setup  # noqa: F401 - the fixtures

pytestmark = pytest.mark.integration


def _unprivileged(setup: Setup) -> pwd.struct_passwd:  # noqa: F811
    """The sample config's arrangement: serve and the milter as one user that owns the mail root
    and the model; users.db root's, mode 0640, that user's group (as `mailsift user add` leaves it)."""
    from mailsift.store.users import Users

    pw = system_user()
    for p in [setup.dir, *setup.dir.rglob("*")]:
        os.lchown(p, 0, 0)
    for top in (setup.dir / "mail", setup.model):
        for p in [top, *top.rglob("*")]:
            os.lchown(p, pw.pw_uid, pw.pw_gid)
    Users(setup.dir / "users.db").share_with(pw.pw_gid)
    setup.sections["store"]["run_as"] = pw.pw_name
    setup.sections["milter"]["user"] = pw.pw_name
    return pw


def test_the_sample_arrangement_is_ok(setup: Setup, mailsift_bin: str) -> None:  # noqa: F811
    _unprivileged(setup)
    code, out = setup.check(mailsift_bin)
    assert (code, out) == (0, [f"{setup.dir / 'mailsift.toml'}: OK"])


def test_a_users_db_run_as_could_change_is_reported(setup: Setup, mailsift_bin: str) -> None:  # noqa: F811
    pw = _unprivileged(setup)
    os.chown(setup.dir / "users.db", pw.pw_uid, pw.pw_gid)
    code, out = setup.check(mailsift_bin)
    assert code == 1
    assert len(out) == 1 and out[0].startswith("[store] users: ") and "only reads it" in out[0], out


def test_a_model_the_milter_would_refuse_is_reported(setup: Setup, mailsift_bin: str) -> None:  # noqa: F811
    _unprivileged(setup)
    nobody = pwd.getpwnam("nobody")
    os.chown(setup.model / "model.bin", nobody.pw_uid, -1)
    code, out = setup.check(mailsift_bin)
    assert code == 1
    assert any(line.startswith("[classifier] dbpath: ") and "owned by nobody" in line for line in out), out


def test_check_config_reads_every_listener_form(setup: Setup, mailsift_bin: str) -> None:  # noqa: F811
    """A TCP milter or policy socket in the shared grammar is not taken for a unix path."""
    setup.sections["milter"]["socket"] = "127.0.0.1:8891"
    setup.sections["policy"]["socket"] = "[::1]:10040"
    code, out = setup.check(mailsift_bin)
    assert (code, out) == (0, [f"{setup.dir / 'mailsift.toml'}: OK"])
