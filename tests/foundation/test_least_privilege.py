"""Least privilege: no pickle another user can write is loaded, no root command follows links
in a tree the mail user owns, users.db and sockets are only as open as they must be."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.sysuser import as_user, system_user

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmp_path() -> Path:
    """A temporary directory other users can reach (pytest's own sits under a 0700 directory)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="mailsift-lp-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _small_model(d: Path) -> None:
    from mailsift.classifier.api import new_model, save_model

    model = new_model(hash_bits=10)
    model.learn(b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n", "spam")
    model.learn(b"Subject: minutes\r\n\r\nthe meeting minutes are attached\r\n", "ham")
    save_model(model, d)


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    for p in [top, *top.rglob("*")]:
        os.lchown(p, uid, gid)


def test_root_refuses_a_model_the_mail_user_wrote(tmp_path: Path) -> None:
    from mailsift.classifier.persist import ModelError, load_model

    pw = system_user()
    d = tmp_path / "model"
    _small_model(d)
    load_model(d)  # root's own model loads
    _chown_tree(d, pw.pw_uid, pw.pw_gid)
    with pytest.raises(ModelError) as err:
        load_model(d)
    assert f"owned by {pw.pw_name} (uid {pw.pw_uid})" in str(err.value)


def test_the_models_owner_loads_it_and_so_does_a_less_privileged_reader(tmp_path: Path) -> None:
    """One user for the processes sharing the model: what the learner (as that user) wrote, the
    milter (as that user) loads; a model root wrote loads for that user too."""
    pw = system_user()
    os.chown(tmp_path, pw.pw_uid, pw.pw_gid)
    code = ("import sys; from mailsift.classifier.persist import load_model; "
            "m = load_model(sys.argv[1]); print('loaded', m.n_spam_, m.n_ham_)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for owner in (pw.pw_uid, 0):
        d = tmp_path / f"model-{owner}"
        _small_model(d)
        _chown_tree(d, owner, pw.pw_gid)  # root:mailsift 0640 for a root-written one
        r = subprocess.run(as_user(pw) + [sys.executable, "-c", code, str(d)], capture_output=True, text=True,
                           env=env, cwd="/", timeout=120)
        assert r.returncode == 0 and "loaded 1 1" in r.stdout, r.stderr


def test_a_group_writable_model_is_refused(tmp_path: Path) -> None:
    from mailsift.classifier.persist import MODEL_FILE, ModelError, load_model

    system_user()
    d = tmp_path / "model"
    _small_model(d)
    os.chmod(d / MODEL_FILE, 0o660)
    with pytest.raises(ModelError, match="chmod go-w"):
        load_model(d)


def test_a_root_command_refuses_the_mail_users_model(tmp_path: Path, mailsift_bin: str) -> None:
    pw = system_user()
    d = tmp_path / "model"
    _small_model(d)
    _chown_tree(d, pw.pw_uid, pw.pw_gid)
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{d}"\n')
    r = subprocess.run([mailsift_bin, "classify", "--config", str(cfg), "-"], input=b"Subject: hi\r\n\r\nhello\r\n",
                       capture_output=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode != 0
    assert f"owned by {pw.pw_name}".encode() in r.stderr, r.stderr
