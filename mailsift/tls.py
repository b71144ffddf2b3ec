"""TLS for the store's listeners: server contexts and self-signed certificates.

`server_context(cert, key)` builds the one `ssl.SSLContext` that every listener of
`mailsift serve` shares (implicit-TLS ports and STLS/STARTTLS upgrades alike).
`make_self_signed(hostname, cert_path, key_path)` writes a certificate for a quick start
(`mailsift cert HOSTNAME`); real deployments configure their own chain in `[store]`.

The `cryptography` package is imported inside `make_self_signed`, so importing this module
stays cheap for the command-line parser.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

# TLS 1.2 suites: forward secrecy and AEAD only. TLS 1.3 suites are not configurable here
# and OpenSSL's defaults for them are all good.
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256",
    "DHE-RSA-AES256-GCM-SHA384",
))


class TLSConfigError(ValueError):
    """The certificate or key cannot be used (missing, unreadable, not matching)."""


def server_context(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, forward-secret AEAD suites, no compression,
    no renegotiation, no session tickets that outlive the key. Raises TLSConfigError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    ctx.options |= ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
    try:
        ctx.load_cert_chain(os.fspath(cert), os.fspath(key))
    except FileNotFoundError as exc:
        raise TLSConfigError(f"TLS certificate or key not found: {exc.filename}") from None
    except PermissionError as exc:
        raise TLSConfigError(f"TLS certificate or key not readable: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise TLSConfigError(f"TLS certificate {cert} / key {key} unusable: {exc.reason or exc}") from None
    return ctx


def context_from_settings(tls_cert: str, tls_key: str) -> ssl.SSLContext | None:
    """The context for `[store] tls_cert`/`tls_key`; None when both are empty (no TLS)."""
    if not tls_cert and not tls_key:
        return None
    if not tls_cert or not tls_key:
        raise TLSConfigError("[store] tls_cert and tls_key must be set together")
    return server_context(tls_cert, tls_key)


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically with permissions `mode` from the first byte on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def make_self_signed(hostname: str, cert_path: str | os.PathLike[str], key_path: str | os.PathLike[str],
                     days: int = 825) -> None:
    """Write a self-signed certificate for `hostname` (EC P-256, SAN = hostname, plus the
    address itself when `hostname` is an IP) to `cert_path` (0644) and its key to
    `key_path` (0600)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hostname = hostname.strip().rstrip(".")
    if not hostname or any(c.isspace() or c in "/\\\0" for c in hostname):
        raise ValueError(f"not a usable host name: {hostname!r}")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64])])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        alt = x509.DNSName(hostname)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=True, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_private(Path(key_path), key_pem, 0o600)
    _write_private(Path(cert_path), cert.public_bytes(serialization.Encoding.PEM), 0o644)


def client_context(cafile: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """A verifying client context (tests and tools); trusts `cafile` when given."""
    ctx = ssl.create_default_context(cafile=os.fspath(cafile) if cafile else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx
