"""A fixed unprivileged system user for privilege tests (made once, left in place)."""

from __future__ import annotations

import os
import pwd
import subprocess

import pytest

TEST_USER = "mailsift-test"


def system_user(name: str = TEST_USER) -> pwd.struct_passwd:
    """The user `name`, created (no login, no home) when missing. Skips the test unless root."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                    "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
    return pwd.getpwnam(name)


def as_user(pw: pwd.struct_passwd) -> list[str]:
    """A command prefix that runs the rest as `pw` (no supplementary groups)."""
    return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
