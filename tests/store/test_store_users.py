"""Users: scrypt hashes, `mailsift user add|passwd|del|list`, verify without a user-existence leak."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from mailsift.store.names import InvalidName
from mailsift.store.users import NoSuchUser, UserError, UserExists, Users, check_password, hash_password


def test_hash_format_and_check() -> None:
    h = hash_password("s3cret")
    assert h.startswith("$scrypt$ln=14,r=8,p=1$")
    assert check_password("s3cret", h) and not check_password("s3cret ", h)
    assert hash_password("s3cret") != h  # salted
    assert not check_password("x", "garbage") and not check_password("x", "$scrypt$ln=x$a$b")


def test_users_api(tmp_path: Path) -> None:
    u = Users(tmp_path / "users.db")
    assert u.list() == [] and not u.verify("alice@example.test", "pw")
    assert u.add("Alice@Example.Test", "pw1") == "alice@example.test"
    with pytest.raises(UserExists):
        u.add("alice@example.test", "other")
    assert u.verify("alice@example.test", "pw1") and u.verify("ALICE@example.test", "pw1")
    assert not u.verify("alice@example.test", "pw2")
    u.set_password("alice@example.test", "pw2")
    assert u.verify("alice@example.test", "pw2") and not u.verify("alice@example.test", "pw1")
    assert u.exists("alice@example.test") and not u.exists("bob@example.test")
    with pytest.raises(UserError):
        u.add("bob@example.test", "")
    with pytest.raises(UserError):
        u.add("bob@example.test", "a\x00b")
    with pytest.raises(InvalidName):
        u.add("../bob@example.test", "pw")
    with pytest.raises(InvalidName):
        u.add("bob", "pw")  # no default domain
    u.delete("alice@example.test")
    with pytest.raises(NoSuchUser):
        u.delete("alice@example.test")
    assert u.list() == []
    assert (tmp_path / "users.db").stat().st_mode & 0o077 == 0


def test_reads_of_one_user(tmp_path: Path) -> None:
    """exists, password_hash and the per-user columns read through one helper: the canonical
    name, a read-only connection; no database, an invalid or unknown name and a database from
    before the columns answer "no such user" / "not set", never an error."""
    import sqlite3
    u = Users(tmp_path / "users.db", default_domain="example.test")
    assert not u.exists("alice") and u.password_hash("alice") is None          # no database yet
    assert u.quota_mb("alice") is None and u.implicit_feedback("alice")
    u.add("alice", "pw")
    assert u.exists("ALICE@Example.Test") and u.exists("alice")
    assert u.password_hash("alice").startswith("$scrypt$") and u.password_hash("bob") is None
    for bad in ("../x", "a\x00b", "x" * 400):
        assert not u.exists(bad) and u.password_hash(bad) is None and u.quota_mb(bad) is None
    # a database from before the per-user columns
    assert u.quota_mb("alice") is None and u.implicit_feedback("alice")
    with sqlite3.connect(tmp_path / "users.db") as db:
        assert {r[1] for r in db.execute("PRAGMA table_info(users)")} == {"name", "hash", "created", "changed"}
    u.set_quota_mb("alice", 7)
    u.set_implicit_feedback("alice", False)
    assert u.quota_mb("alice") == 7 and not u.implicit_feedback("alice") and u.quota_mb("bob") is None


@pytest.mark.parametrize("name,password", [("", ""), ("a\x00@b.c", "x"), ("x" * 5000, "y"), ("alice@example.test",
                                            "p" * 5000), (None, "x"), ("alice@example.test", None)])
def test_verify_never_raises(tmp_path: Path, name, password) -> None:
    u = Users(tmp_path / "users.db")
    u.add("alice@example.test", "pw")
    assert u.verify(name, password) is False


def test_verify_does_the_same_work_for_unknown_users(tmp_path: Path, monkeypatch) -> None:
    """An unknown name costs one scrypt with the same parameters as a known one (no timing leak)."""
    import hashlib

    u = Users(tmp_path / "users.db")
    u.add("alice@example.test", "pw")
    calls: list[tuple] = []
    real = hashlib.scrypt

    def counting(password, *, salt, n, r, p, maxmem=0, dklen=64):
        calls.append((n, r, p, dklen))
        return real(password, salt=salt, n=n, r=r, p=p, maxmem=maxmem, dklen=dklen)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    u.verify("nobody@example.test", "x")  # may hash the dummy once
    calls.clear()
    assert not u.verify("alice@example.test", "wrong")
    known = list(calls)
    calls.clear()
    assert not u.verify("nobody@example.test", "wrong")
    assert calls == known and len(known) == 1


def run(bin_: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_, "user", *args], input=input, text=True, capture_output=True, timeout=60)


def test_user_command(mailsift_bin: str, tmp_path: Path) -> None:
    db, root = str(tmp_path / "u.db"), str(tmp_path / "mail")
    r = run(mailsift_bin, "add", "--users", db, "--mail-root", root, "alice@example.test", "--stdin", input="pw-1\n")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "mail" / "example.test" / "alice" / ".Junk" / "cur").is_dir()  # mailbox made
    r = run(mailsift_bin, "--users", db, "--mail-root", root, "add", "alice@example.test", "--stdin", input="x\n")
    assert r.returncode == 1 and "exists" in r.stderr
    assert run(mailsift_bin, "list", "--users", db).stdout.split() == ["alice@example.test"]
    assert Users(db).verify("alice@example.test", "pw-1")
    assert run(mailsift_bin, "passwd", "--users", db, "alice@example.test", "--stdin", input="pw-2\n").returncode == 0
    assert Users(db).verify("alice@example.test", "pw-2")
    # no terminal and no --stdin: refuses rather than reading a password from anywhere else
    r = run(mailsift_bin, "passwd", "--users", db, "alice@example.test", input="pw-3\n")
    assert r.returncode == 1 and "--stdin" in r.stderr
    # a password on the command line is not accepted
    r = run(mailsift_bin, "add", "--users", db, "bob@example.test", "secret")
    assert r.returncode != 0 and not Users(db).exists("bob@example.test")
    r = run(mailsift_bin, "add", "--users", db, "--mail-root", root, "../evil@example.test", "--stdin", input="p\n")
    assert r.returncode == 1 and not (tmp_path / "evil").exists()
    assert run(mailsift_bin, "del", "--users", db, "alice@example.test").returncode == 0
    assert run(mailsift_bin, "list", "--users", db).stdout == ""
    r = run(mailsift_bin, "del", "--users", db, "alice@example.test")
    assert r.returncode == 1 and "no user" in r.stderr


def test_postfix_config_lines(mailsift_bin: str, tmp_path: Path) -> None:
    out = subprocess.run([mailsift_bin, "postfix-config", "--part", "store"], capture_output=True, text=True,
                         check=True).stdout
    assert "virtual_transport = lmtp:unix:private/mailsift-lmtp" in out
    assert "virtual_mailbox_maps = proxy:socketmap:unix:/var/spool/postfix/private/mailsift-map:mailbox" in out
    assert "smtpd_reject_unlisted_recipient = yes" in out
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nlmtp = "127.0.0.1:2424"\nlookup = "off"\n')
    out = subprocess.run([mailsift_bin, "postfix-config", "--part", "store", "--config", str(cfg)],
                         capture_output=True, text=True, check=True).stdout
    assert "virtual_transport = lmtp:inet:127.0.0.1:2424" in out and "socketmap" not in out


def test_bad_config_is_a_clear_error(mailsift_bin: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\nlmtp = "nowhere"\n')
    r = subprocess.run([mailsift_bin, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "lmtp" in r.stderr
    cfg.write_text(f'[store]\nmail_root = "{tmp_path}/m"\nusers = "{tmp_path}/u.db"\nlmtp = "off"\npop3 = "off"\n'
                   f'lookup = "off"\npop3s = "127.0.0.1:1"\n')
    r = subprocess.run([mailsift_bin, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "tls" in r.stderr.lower()
