"""Modified UTF-7 mailbox names (RFC 3501 5.1.3)."""

import pytest
from hypothesis import given, strategies as st

from mailsift.protocols.imap.mutf7 import MUTF7Error, decode, encode


@pytest.mark.parametrize("text,wire", [
    ("INBOX", b"INBOX"),
    ("Entwürfe", b"Entw&APw-rfe"),
    ("~peter/mail/台北/日本語", b"~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the RFC's example
    ("&", b"&-"),
    ("Tom & Jerry", b"Tom &- Jerry"),
    ("Ü&Ö", b"&ANw-&-&ANY-"),
])
def test_known_names(text: str, wire: bytes) -> None:
    assert encode(text) == wire
    assert decode(wire) == text


@pytest.mark.parametrize("bad", [
    b"&U,BTFw",      # unterminated
    b"&Jjo!-",       # bad base64 character
    b"&AGE-",        # printable ASCII must not be encoded ("a")
    b"&ANx-",        # non-zero padding bits (not the canonical &ANw-)
    b"caf\xc3\xa9",   # raw 8-bit
    b"a\x01b",
])
def test_malformed_names_are_refused(bad: bytes) -> None:
    with pytest.raises(MUTF7Error):
        decode(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_round_trip(text: str) -> None:
    wire = encode(text)
    assert all(0x20 <= b <= 0x7E for b in wire)
    assert decode(wire) == text
