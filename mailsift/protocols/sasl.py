"""SASL PLAIN (RFC 4616), as IMAP AUTHENTICATE and POP3 AUTH take it: one decoder for both."""

from __future__ import annotations

import base64
import binascii


class SaslError(ValueError):
    """The PLAIN response cannot be decoded; str(exc) says why (for the BAD or -ERR reply)."""


def decode_plain(response: str | bytes) -> tuple[str, str, str]:
    """Base64 of authzid NUL authcid NUL passwd -> (authzid, authcid, passwd)."""
    data = response.strip()
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            raise SaslError("invalid base64 in PLAIN response") from None
    if data == b"=":
        raise SaslError("empty PLAIN response")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("invalid base64 in PLAIN response") from None
    parts = raw.split(b"\0")
    if len(parts) != 3:
        raise SaslError("malformed PLAIN response")
    try:
        authzid, authcid, passwd = (p.decode("utf-8") for p in parts)
    except UnicodeDecodeError:
        raise SaslError("invalid UTF-8 in PLAIN response") from None
    if not authcid:
        raise SaslError("malformed PLAIN response")
    return authzid, authcid, passwd
