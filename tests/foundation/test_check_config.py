"""`mailsift check-config --config FILE`, run as a user runs it, against a real clamd, a real
Redis, a real model and a real TLS pair: a good config exits 0; each problem it reports is made
once, on its own, and must come out exactly, with its key, and exit 1."""

from __future__ import annotations

import datetime
import grp
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from harness.clamd import ClamdInstance, available
from harness.metrics import free_port, train_small_model
from harness.postfix import make_workdir
from harness.redis import REDIS_SERVER, RedisServer
from mailsift.store.users import Users
from mailsift.tls import make_self_signed

pytestmark = pytest.mark.integration

ME = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, Any]]:
    if not available() or not Path(REDIS_SERVER).exists():
        pytest.skip("clamd or redis-server not installed")
    wd = make_workdir("mailsift-checkconfig-")
    clamd = ClamdInstance(wd / "clamd", tcp=False)
    redis = RedisServer(wd / "redis")
    try:
        clamd.start()
        redis.start()
        model = wd / "model"
        train_small_model(model)
        yield {"clamd": clamd, "redis": redis, "model": model, "dir": wd}
    finally:
        redis.stop()
        clamd.cleanup()
        shutil.rmtree(wd, ignore_errors=True)


class Setup:
    """A good configuration in its own directory; each test breaks one thing."""

    def __init__(self, base: Path, services: dict[str, Any]) -> None:
        self.dir = base
        mail = base / "mail"
        mail.mkdir()
        Users(base / "users.db").add("alice@example.test", "pw-alice")
        (base / "sock").mkdir()
        self.model = base / "model"
        shutil.copytree(services["model"], self.model)
        tls = base / "tls"
        make_self_signed("mail.example.test", tls / "mail.crt", tls / "mail.key")
        self.sections: dict[str, dict[str, Any]] = {
            "classifier": {"dbpath": str(self.model)},
            "milter": {"socket": f"unix:{base / 'sock' / 'milter.sock'}", "clamd": services["clamd"].address,
                       "socket_group": ""},
            "store": {"mail_root": str(mail), "users": str(base / "users.db"),
                      "lmtp": f"unix:{base / 'sock' / 'lmtp.sock'}", "lookup": f"unix:{base / 'sock' / 'map.sock'}",
                      "pop3": "127.0.0.1:1110", "imaps": "127.0.0.1:1993",
                      "tls_cert": str(tls / "mail.crt"), "tls_key": str(tls / "mail.key"), "run_as": ME},
            "policy": {"socket": f"unix:{base / 'sock' / 'policy.sock'}", "db": services["redis"].url},
            "metrics": {"milter": "127.0.0.1:9181", "store": "127.0.0.1:9182", "policy": "127.0.0.1:9183"},
        }
        self.extra = ""

    def write(self) -> Path:
        lines = []
        for name, table in self.sections.items():
            lines.append(f"[{name}]")
            for key, value in table.items():
                if isinstance(value, bool):
                    lines.append(f"{key} = {'true' if value else 'false'}")
                elif isinstance(value, (int, float)):
                    lines.append(f"{key} = {value}")
                else:
                    lines.append(f'{key} = "{value}"')
        path = self.dir / "mailsift.toml"
        path.write_text("\n".join(lines) + "\n" + self.extra)
        return path

    def check(self, mailsift_bin: str) -> tuple[int, list[str]]:
        proc = subprocess.run([mailsift_bin, "check-config", "--config", str(self.write())],
                              capture_output=True, text=True, timeout=120)
        return proc.returncode, [ln for ln in proc.stdout.splitlines() if ln]


@pytest.fixture
def setup(services: dict[str, Any]) -> Iterator[Setup]:
    base = make_workdir("mailsift-checkconfig-case-")
    try:
        yield Setup(base, services)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_good_config_exits_0(setup: Setup, mailsift_bin: str) -> None:
    code, out = setup.check(mailsift_bin)
    assert (code, out) == (0, [f"{setup.dir / 'mailsift.toml'}: OK"])


def expired_pair(setup: Setup) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old.example.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=35)).sign(key, hashes.SHA256()))
    crt, pem = setup.dir / "old.crt", setup.dir / "old.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pem.chmod(0o600)
    setup.sections["store"].update(tls_cert=str(crt), tls_key=str(pem))


def other_key(setup: Setup) -> None:
    make_self_signed("other.example.test", setup.dir / "other.crt", setup.dir / "other.key")
    setup.sections["store"]["tls_key"] = str(setup.dir / "other.key")


def corrupt_model(setup: Setup) -> None:
    from mailsift.classifier.api import MODEL_FILE

    path = setup.model / MODEL_FILE
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def set_(section: str, **values: Any) -> Callable[[Setup], None]:
    return lambda s: s.sections[section].update(values)


def chmod(path: str, mode: int) -> Callable[[Setup], None]:
    return lambda s: (s.dir / path).chmod(mode)


def regular_file_at_milter_socket(s: Setup) -> None:
    (s.dir / "sock" / "milter.sock").write_text("not a socket")


def drop_store_key(key: str) -> Callable[[Setup], None]:
    return lambda s: s.sections["store"].pop(key)


# (id, how to break the good setup, the key, a piece of the message)
CASES: list[tuple[str, Callable[[Setup], None], str, str]] = [
    ("missing-path", lambda s: shutil.rmtree(s.dir / "mail"), "[store] mail_root", "does not exist"),
    ("file-not-dir", lambda s: (shutil.rmtree(s.dir / "mail"), (s.dir / "mail").write_text("")),
     "[store] mail_root", "is not a directory"),
    ("users-db-missing", lambda s: (s.dir / "users.db").unlink(), "[store] users", "mailsift user add"),
    ("users-db-readable-by-all", chmod("users.db", 0o644), "[store] users", "every user may read it"),
    ("mail-root-writable-by-all", chmod("mail", 0o777), "[store] mail_root", "every user may write to it"),
    ("tls-key-readable-by-all", chmod("tls/mail.key", 0o644), "[store] tls_key", "every user may read it"),
    ("tls-key-not-matching-cert", other_key, "[store] tls_key", "does not match the certificate"),
    ("tls-cert-expired", expired_pair, "[store] tls_cert", "expired on"),
    ("tls-key-without-cert", set_("store", tls_cert=""), "[store] tls_cert", "must be set together"),
    ("imaps-without-tls", lambda s: (drop_store_key("tls_cert")(s), drop_store_key("tls_key")(s)),
     "[store] imaps", "needs tls_cert and tls_key"),
    ("run-as-unknown-user", set_("store", run_as="no-such-user-xyz"), "[store] run_as", "no user"),
    ("clamd-not-answering", lambda s: s.sections["milter"].update(clamd=f"unix:{s.dir / 'sock' / 'nothing.sock'}"),
     "[milter] clamd", "does not answer PING"),
    ("redis-not-answering", set_("policy", db=f"redis://127.0.0.1:{free_port()}/0"), "[policy] db",
     "does not answer PING"),
    ("share-redis-not-answering", set_("classifier", share=f"redis://127.0.0.1:{free_port()}/0"),
     "[classifier] share", "does not answer PING"),
    ("model-corrupt", corrupt_model, "[classifier] dbpath", "corrupt"),
    ("model-missing", lambda s: shutil.rmtree(s.model), "[classifier] dbpath", "does not exist"),
    ("socket-path-taken", regular_file_at_milter_socket, "[milter] socket", "is not a socket"),
    ("socket-dir-closed-to-group", lambda s: (s.sections["milter"].update(socket_group=GROUP),
                                               (s.dir / "sock").chmod(0o700)),
     "[milter] socket", f"cannot be entered by group {GROUP}"),
    ("socket-group-unknown", set_("milter", socket_group="no-such-group-xyz"), "[milter] socket_group", "no group"),
    ("bad-key", set_("store", lmpt="unix:/tmp/typo.sock"), "[store] lmpt", "unknown setting"),
    ("bad-type", set_("milter", clamd_timeout="thirty"), "[milter] clamd_timeout", "expected a number"),
    ("bad-value", set_("policy", delay=-5), "[policy] delay", "delay must not be negative"),
    ("unknown-section", lambda s: s.sections.update(milterr={"socket": "x"}), "[milterr]", "unknown section"),
    ("metrics-beyond-loopback", set_("metrics", store="0.0.0.0:9182"), "[metrics] store",
     "not a loopback address"),
]


@pytest.mark.parametrize("break_it,key,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_problem_is_reported_with_its_key(setup: Setup, mailsift_bin: str, break_it: Callable[[Setup], None],
                                              key: str, fragment: str) -> None:
    break_it(setup)
    code, out = setup.check(mailsift_bin)
    assert code == 1, out
    assert len(out) == 1, out
    assert out[0].startswith(f"{key}: ") and fragment in out[0], out


def test_wrong_owner(setup: Setup, mailsift_bin: str) -> None:
    if os.getuid() != 0:
        pytest.skip("needs root to give a file to another user")
    nobody = pwd.getpwnam("nobody")
    os.chown(setup.dir / "users.db", nobody.pw_uid, -1)
    code, out = setup.check(mailsift_bin)
    assert code == 1
    assert out == [f"[store] users: {setup.dir / 'users.db'} is owned by nobody, not {ME} "
                   f"(chown {ME} {setup.dir / 'users.db'})"]


def test_every_problem_at_once(setup: Setup, mailsift_bin: str) -> None:
    """A bad key does not hide the other sections' problems: all are printed, in one run."""
    setup.sections["store"]["lmpt"] = "x"
    setup.sections["milter"]["clamd"] = f"unix:{setup.dir / 'sock' / 'nothing.sock'}"
    corrupt_model(setup)
    (setup.dir / "users.db").chmod(0o644)
    code, out = setup.check(mailsift_bin)
    assert code == 1
    assert sorted(line.split(":", 1)[0] for line in out) == sorted(
        ["[store] lmpt", "[store] users", "[classifier] dbpath", "[milter] clamd"]), out
