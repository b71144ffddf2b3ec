"""TLS contexts and `mailsift cert`: real handshakes over loopback sockets."""

from __future__ import annotations

import os
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from mailsift.tls import TLSConfigError, client_context, context_from_settings, make_self_signed, server_context


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture()
def cert(tmp_path: Path) -> tuple[Path, Path]:
    c, k = tmp_path / "h.crt", tmp_path / "h.key"
    make_self_signed("localhost", c, k)
    return c, k


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str = "localhost") -> str:
    """One TLS handshake over a loopback socket pair; returns the negotiated version."""
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            conn, _ = lsock.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"hello")
        except (ssl.SSLError, OSError) as exc:
            errors.append(exc)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                assert tls.recv(5) == b"hello"
                return str(tls.version())
    finally:
        t.join(10)
        lsock.close()


def test_self_signed_cert_verifies_and_negotiates_modern_tls(cert: tuple[Path, Path]) -> None:
    c, k = cert
    version = handshake(server_context(c, k), client_context(c))
    assert version in ("TLSv1.2", "TLSv1.3")


def test_wrong_hostname_fails_verification(cert: tuple[Path, Path]) -> None:
    c, k = cert
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server_context(c, k), client_context(c), hostname="other.example")


def test_tls_1_1_client_is_refused(cert: tuple[Path, Path]) -> None:
    c, k = cert
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        old.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    # control: this client does get TLS 1.1 from a server that allows it
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.minimum_version = ssl.TLSVersion.TLSv1
    lax.set_ciphers("ALL:@SECLEVEL=0")
    lax.load_cert_chain(c, k)
    try:
        assert handshake(lax, old) == "TLSv1.1"
    except (ssl.SSLError, ConnectionError):
        pytest.skip("this OpenSSL refuses TLS 1.1 on both sides")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        handshake(server_context(c, k), old)


def test_tls12_only_client_gets_aead_pfs_suite(cert: tuple[Path, Path]) -> None:
    c, k = cert
    cli = client_context(c)
    cli.maximum_version = ssl.TLSVersion.TLSv1_2
    srv = server_context(c, k)
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]
    got: list[tuple[str, str, int] | None] = []

    def serve() -> None:
        conn, _ = lsock.accept()
        try:
            with srv.wrap_socket(conn, server_side=True) as tls:
                got.append(tls.cipher())
                tls.sendall(b"x")
        except (ssl.SSLError, OSError):
            got.append(None)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with cli.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.recv(1)
            assert tls.version() == "TLSv1.2"
    t.join(10)
    lsock.close()
    name = got[0][0] if got and got[0] else ""
    assert name.startswith(("ECDHE-", "DHE-")) and ("GCM" in name or "CHACHA20" in name), name


def test_mismatched_key_and_missing_files_are_clear_errors(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    c, _ = cert
    other_c, other_k = tmp_path / "o.crt", tmp_path / "o.key"
    make_self_signed("other", other_c, other_k)
    with pytest.raises(TLSConfigError, match="unusable"):
        server_context(c, other_k)
    with pytest.raises(TLSConfigError, match="not found"):
        server_context(tmp_path / "nope.crt", other_k)
    with pytest.raises(TLSConfigError, match="together"):
        context_from_settings(str(c), "")
    assert context_from_settings("", "") is None


def test_ip_address_hostname_gets_ip_san(tmp_path: Path) -> None:
    c, k = tmp_path / "ip.crt", tmp_path / "ip.key"
    make_self_signed("127.0.0.1", c, k)
    assert handshake(server_context(c, k), client_context(c), hostname="127.0.0.1")


def test_cert_command_writes_private_key_0600_and_refuses_overwrite(mailsift_bin: str, tmp_path: Path) -> None:
    out = tmp_path / "tls"
    old_umask = os.umask(0)  # even a careless umask must not widen the key's mode
    try:
        r = subprocess.run([mailsift_bin, "cert", "mail.example.test", "--out", str(out)],
                           capture_output=True, text=True, timeout=60)
    finally:
        os.umask(old_umask)
    assert r.returncode == 0, r.stderr
    crt, key = out / "mail.example.test.crt", out / "mail.example.test.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(crt.stat().st_mode) == 0o644
    assert f'tls_cert = "{crt}"' in r.stdout and f'tls_key = "{key}"' in r.stdout
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:mail.example.test" in text
    before = key.read_bytes()
    r2 = subprocess.run([mailsift_bin, "cert", "mail.example.test", "--out", str(out)],
                        capture_output=True, text=True, timeout=60)
    assert r2.returncode == 1 and "--force" in r2.stderr
    assert key.read_bytes() == before
    r3 = subprocess.run([mailsift_bin, "cert", "mail.example.test", "--out", str(out), "--force"],
                        capture_output=True, text=True, timeout=60)
    assert r3.returncode == 0 and key.read_bytes() != before


@pytest.mark.parametrize("bad", ["../evil", "a/b", ""])
def test_cert_command_rejects_bad_hostnames(mailsift_bin: str, tmp_path: Path, bad: str) -> None:
    r = subprocess.run([mailsift_bin, "cert", bad, "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "host name" in r.stderr
    assert list(tmp_path.iterdir()) == []
