"""Least privilege: no pickle another user can write is loaded, no root command follows links
in a tree the mail user owns, users.db and sockets are only as open as they must be."""

from __future__ import annotations

import os
import pwd
import shutil
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


# -- no root command follows a link in the mail user's tree --------------------------------------

def test_maildirfolder_never_creates_a_dangling_links_target(tmp_path: Path) -> None:
    from mailsift.store.maildir import ensure_maildir

    folder = tmp_path / ".Junk"
    folder.mkdir()
    target = tmp_path / "created-through-the-link"
    (folder / "maildirfolder").symlink_to(target)
    ensure_maildir(folder, folder=True)
    assert not target.exists() and not target.is_symlink()
    assert (folder / "cur").is_dir() and (folder / "maildirfolder").is_symlink()
    plain = tmp_path / ".Sent"
    ensure_maildir(plain, folder=True)
    assert (plain / "maildirfolder").is_file()


def test_uidvalidity_never_writes_through_a_planted_tmp_link(tmp_path: Path) -> None:
    from mailsift.store.index import next_uidvalidity

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "mailsift-uidvalidity.tmp").symlink_to(victim)
    value = next_uidvalidity(tmp_path)
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "mailsift-uidvalidity").read_text() == f"{value}\n"
    assert not (tmp_path / "mailsift-uidvalidity").is_symlink()


def _user_cmd(mailsift_bin: str, cfg: Path, *args: str, password: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([mailsift_bin, "user", "--config", str(cfg), *args], input=password + "\n", text=True,
                          capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_user_add_as_root_follows_no_link_the_mail_user_planted(tmp_path: Path, mailsift_bin: str) -> None:
    """`mailsift user add` as root with run_as, over a mailbox the mail user owns (a user deleted
    and added again: the mail stays on disk) where that user planted links: cur/x -> a root file
    (chowned through the link before), mailsift-uidvalidity.tmp -> a root file (truncated before)."""
    pw = system_user()
    root = tmp_path / "mail"
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(f'[store]\nmail_root = "{root}"\nusers = "{tmp_path / "etc" / "users.db"}"\n'
                   f'run_as = "{pw.pw_name}"\n')
    r = _user_cmd(mailsift_bin, cfg, "add", "alice@example.test", "--stdin", password="pw-alice-1")
    assert r.returncode == 0, r.stderr
    box = root / "example.test" / "alice"
    assert {p.lstat().st_uid for p in [box, *box.rglob("*")]} == {pw.pw_uid}
    assert _user_cmd(mailsift_bin, cfg, "del", "alice@example.test").returncode == 0

    victim = tmp_path / "shadow"
    victim.write_text("root:secret\n")
    victim.chmod(0o600)
    victim2 = tmp_path / "config"
    victim2.write_text("keep me\n")
    (box / "cur" / "x").symlink_to(victim)
    (box / "mailsift-index.sqlite3").unlink()  # rebuilt: fresh UIDVALIDITYs are written
    for extra in ("-wal", "-shm"):
        (box / f"mailsift-index.sqlite3{extra}").unlink(missing_ok=True)
    (box / "mailsift-uidvalidity.tmp").symlink_to(victim2)
    for p in [box, *box.rglob("*")]:
        os.lchown(p, pw.pw_uid, pw.pw_gid)

    r = _user_cmd(mailsift_bin, cfg, "add", "alice@example.test", "--stdin", password="pw-alice-2")
    assert r.returncode == 0, r.stderr
    assert victim.stat().st_uid == 0 and victim.read_text() == "root:secret\n"
    assert victim2.stat().st_uid == 0 and victim2.read_text() == "keep me\n"
    assert (box / "mailsift-index.sqlite3").exists()  # the mailbox was opened (as the mail user)
    assert (box / "mailsift-index.sqlite3").stat().st_uid == pw.pw_uid


def test_users_db_is_root_s_and_only_readable_by_run_as(tmp_path: Path, mailsift_bin: str) -> None:
    import stat

    pw = system_user()
    users = tmp_path / "etc" / "users.db"
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(f'[store]\nmail_root = "{tmp_path / "mail"}"\nusers = "{users}"\nrun_as = "{pw.pw_name}"\n')
    r = _user_cmd(mailsift_bin, cfg, "add", "alice@example.test", "--stdin", password="pw-alice-1")
    assert r.returncode == 0, r.stderr
    st = users.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, pw.pw_gid, 0o640)
    code = "import sys; from mailsift.store.users import Users; print(Users(sys.argv[1]).verify('alice@example.test', 'pw-alice-1'))"
    r = subprocess.run(as_user(pw) + [sys.executable, "-c", code, str(users)], capture_output=True, text=True,
                       cwd="/", timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.stdout.strip() == "True", r.stderr
    w = subprocess.run(as_user(pw) + ["sh", "-c", f"echo x >> {users}"], capture_output=True, timeout=30)
    assert w.returncode != 0  # the server's user cannot change it


# -- what we ship: units and the sample config ------------------------------------------------------

DEPLOY = REPO / "deploy"
UNITS = {"milter": DEPLOY / "systemd" / "mailsift-milter.service",
         "serve": DEPLOY / "systemd" / "mailsift-serve.service",
         "policy": DEPLOY / "systemd" / "mailsift-policy.service",
         "retrain": DEPLOY / "cron" / "mailsift-retrain.service"}


def _directives(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.mark.parametrize("name", sorted(UNITS))
def test_units_are_sandboxed(name: str) -> None:
    d = _directives(UNITS[name])
    assert d.get("NoNewPrivileges") == ["yes"]
    assert d.get("ProtectSystem") == ["strict"]
    assert d.get("PrivateTmp") == ["yes"]
    assert d.get("ReadWritePaths") and d.get("LimitNOFILE")
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(UNITS[name])], capture_output=True, text=True,
                           timeout=60)
        complaints = [ln for ln in (r.stdout + r.stderr).splitlines() if "is not executable" not in ln]
        assert not complaints, complaints


def test_sample_config_runs_every_daemon_unprivileged_and_the_units_fit_it() -> None:
    from mailsift.config import load_config
    from mailsift.daemon import parse_listen

    cfg = load_config(DEPLOY / "mailsift.toml.example")
    mail_user = cfg.store.run_as
    assert mail_user and mail_user != "root"
    assert cfg.milter.user == mail_user  # the model the store's learner writes is the milter's own
    assert cfg.policy.user and cfg.policy.user not in ("root", mail_user)
    for section in (cfg.store, cfg.milter, cfg.policy):
        assert section.socket_mode == "0660" and section.socket_group == "postfix"
    retrain = _directives(UNITS["retrain"])
    assert retrain["User"] == [mail_user]
    cron = [ln for ln in (DEPLOY / "cron" / "mailsift-retrain").read_text().splitlines()
            if ln.strip() and not ln.startswith("#") and "=" not in ln.split()[0]]
    assert [ln.split()[5] for ln in cron] == [mail_user]

    def writable(unit: str) -> list[str]:
        return " ".join(_directives(UNITS[unit])["ReadWritePaths"]).replace("-/", "/").split()

    def covered(unit: str, path: str) -> bool:
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in writable(unit))

    for key in ("lmtp", "lookup"):
        where = parse_listen(getattr(cfg.store, key))
        assert where is not None and covered("serve", where.path)
    assert covered("serve", cfg.store.mail_root) and covered("serve", cfg.classifier.dbpath)
    assert covered("retrain", cfg.classifier.dbpath)
    milter_sock = parse_listen(cfg.milter.socket)
    assert milter_sock is not None and covered("milter", milter_sock.path)
    assert not covered("milter", cfg.classifier.dbpath)  # the milter only reads the model
    policy_sock = parse_listen(cfg.policy.socket)
    assert policy_sock is not None and covered("policy", policy_sock.path)
    assert covered("policy", cfg.policy.db.removeprefix("sqlite:"))
    for unit in ("milter", "serve", "policy"):  # started as root to bind, then the config's user
        assert "User" not in _directives(UNITS[unit])


def _planted_model_dir(tmp_path: Path) -> tuple[pwd.struct_passwd, Path, Path]:
    """A model directory the mail user owns, with a .learn.lock link it planted to `target`."""
    pw = system_user()
    d = tmp_path / "model"
    _small_model(d)
    target = tmp_path / "created-by-root"
    (d / ".learn.lock").unlink(missing_ok=True)
    (d / ".learn.lock").symlink_to(target)
    _chown_tree(d, pw.pw_uid, pw.pw_gid)
    return pw, d, target


def test_root_retrain_touches_nothing_in_the_mail_users_model_dir(tmp_path: Path, mailsift_bin: str) -> None:
    """The nightly retrain as root (the old cron line) refuses at once, even with --force (which
    would have replaced the model with one the milter's user cannot read), and opens nothing there
    (a link the mail user planted as .learn.lock would have been followed)."""
    pw, d, target = _planted_model_dir(tmp_path)
    before = {p.name: (p.lstat().st_uid, p.lstat().st_mtime_ns) for p in d.iterdir()}
    cfg = tmp_path / "mailsift.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{d}"\n')
    r = subprocess.run([mailsift_bin, "retrain", "--config", str(cfg), "--force"], capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode != 0
    assert f"belongs to {pw.pw_name}" in r.stderr + r.stdout, r.stderr
    assert not target.exists()
    assert {p.name: (p.lstat().st_uid, p.lstat().st_mtime_ns) for p in d.iterdir()} == before


def test_root_learn_opens_nothing_in_the_mail_users_model_dir(tmp_path: Path, mailsift_bin: str) -> None:
    pw, d, target = _planted_model_dir(tmp_path)
    msg = tmp_path / "spam.eml"
    msg.write_bytes(b"Subject: pills\r\n\r\ncheap pills\r\n")
    r = subprocess.run([mailsift_bin, "learn", "--spam", str(msg), "--no-progress", "--dbpath", str(d)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert not target.exists()  # the planted .learn.lock link was not followed
    assert r.returncode != 0
    assert f"belongs to {pw.pw_name}" in r.stderr + r.stdout, r.stderr
