"""POP3 on bytes alone: line splitting, command parsing, message transforms, SASL PLAIN."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsift.protocols.linereader import TOO_LONG, LineSplitter
from mailsift.protocols.pop3 import (
    MAX_LINE, CommandError, SaslError, decode_plain, dot_stuff, err,
    multiline, ok, parse_command, parse_number, to_crlf, top_part, valid_uidl,
)
from mailsift.store.maildir import crlf_size


def unstuff(wire: bytes) -> bytes:
    """What a client does with a multi-line reply body: strip the terminator, unstuff dots."""
    if wire == b".\r\n":
        return b""
    assert wire.endswith(b"\r\n.\r\n")
    body = wire[:-5]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


# -- line splitting ------------------------------------------------------------------------

def test_splitter_crlf_and_bare_lf_and_partial() -> None:
    s = LineSplitter(MAX_LINE)
    s.feed(b"USER a\r\nPASS b\nST")
    assert s.next_line() == b"USER a\r\n"
    assert s.next_line() == b"PASS b\n"
    assert s.next_line() is None
    s.feed(b"AT\r\n")
    assert s.next_line() == b"STAT\r\n"
    assert s.next_line() is None


def test_splitter_overlong_line_reported_once_and_stream_recovers() -> None:
    s = LineSplitter(max_line=16)
    s.feed(b"X" * 40)          # no LF yet: discarded as it arrives
    assert s.next_line() is None
    s.feed(b"Y" * 40)
    assert s.next_line() is None
    s.feed(b"ZZ\r\nNOOP\r\n")
    assert s.next_line() is TOO_LONG
    assert s.next_line() == b"NOOP\r\n"
    s.feed(b"A" * 20 + b"\r\nQUIT\r\n")  # long line arriving whole
    assert s.next_line() is TOO_LONG
    assert s.next_line() == b"QUIT\r\n"


def test_splitter_clear_drops_pipelined_plaintext() -> None:
    s = LineSplitter(MAX_LINE)
    s.feed(b"STLS\r\nUSER evil\r\n")
    assert s.next_line() == b"STLS\r\n"
    s.clear()
    assert s.next_line() is None and not s.has_line()


# -- commands ------------------------------------------------------------------------------

def test_parse_command_basic() -> None:
    c = parse_command(b"retr 12\r\n")
    assert (c.verb, c.args) == ("RETR", ("12",))
    c = parse_command(b"PASS  my secret pass\r\n")
    assert c.verb == "PASS" and c.rest == " my secret pass"
    assert parse_command(b"TOP 1 0\n").args == ("1", "0")


@pytest.mark.parametrize("line, message", [
    (b"\r\n", "empty command"),
    (b"   \r\n", "empty command"),
    (b"RE\0TR 1\r\n", "NUL byte in command"),
    (b"USER a\0b\r\n", "NUL byte in command"),
    (b"XYZZYX\r\n", "unknown command"),
    (b"R3TR 1\r\n", "unknown command"),
    (b"\xff\xfe\r\n", "unknown command"),
    (b"USER \xff\r\n", "invalid UTF-8 in command"),
    (b"USER a\x1bb\r\n", "control characters in command"),
    (b"USER a\rb\r\n", "bare CR in command"),
])
def test_parse_command_rejects(line: bytes, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        parse_command(line)


@pytest.mark.parametrize("text", ["0", "-1", "+1", "1a", "", "99999999999", "١"])
def test_parse_number_rejects(text: str) -> None:
    with pytest.raises(CommandError):
        parse_number(text)


def test_parse_number_zero_line_count() -> None:
    assert parse_number("0", zero_ok=True) == 0
    assert parse_number("007") == 7


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_parse_command_never_raises_anything_else(line: bytes) -> None:
    try:
        cmd = parse_command(line)
    except CommandError as exc:
        assert str(exc)
    else:
        assert cmd.verb.isalpha() and cmd.verb.isupper()


# -- replies -------------------------------------------------------------------------------

def test_replies() -> None:
    assert ok() == b"+OK\r\n"
    assert ok("2 320") == b"+OK 2 320\r\n"
    assert err("locked", "IN-USE") == b"-ERR [IN-USE] locked\r\n"
    assert multiline(["TOP", ".hidden"]) == b"TOP\r\n..hidden\r\n.\r\n"
    assert multiline([]) == b".\r\n"


# -- message transforms --------------------------------------------------------------------

def test_to_crlf_and_size() -> None:
    lf = b"Subject: x\n\nline\n"
    assert to_crlf(lf) == b"Subject: x\r\n\r\nline\r\n"
    assert crlf_size(lf) == len(to_crlf(lf)) == len(lf) + 3
    mixed = b"a\r\nb\nc"
    assert to_crlf(mixed) == b"a\r\nb\r\nc"
    assert crlf_size(mixed) == 7


def test_dot_stuffing_round_trip() -> None:
    msg = to_crlf(b".starts with a dot\n\n.\n..\nend.\n. \n")
    wire = dot_stuff(msg)
    assert wire.startswith(b"..starts")
    assert b"\r\n..\r\n" in wire and b"\r\n...\r\n" in wire
    assert wire.endswith(b"\r\n.\r\n")
    assert unstuff(wire) == msg[:-2]  # the last CRLF belongs to the terminator


def test_dot_stuff_adds_missing_final_crlf() -> None:
    assert dot_stuff(b"no newline") == b"no newline\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"


@given(st.lists(st.sampled_from([b"", b".", b"..", b"a", b".a", b"a.", b"\r", b" ", b"From x"]), max_size=30),
       st.booleans())
@settings(max_examples=300, deadline=None)
def test_dot_stuff_round_trip_property(lines: list[bytes], final_newline: bool) -> None:
    lf = b"\n".join(lines) + (b"\n" if final_newline else b"")
    crlf = to_crlf(lf)
    assert len(crlf) == crlf_size(lf)
    wire = dot_stuff(crlf)
    # no line of the body is the lone terminator before the real end
    assert b"\r\n.\r\n" not in wire[:-5] and not wire.startswith(b".\r\n") or wire == b".\r\n"
    expected = crlf[:-2] if crlf.endswith(b"\r\n") else crlf
    assert unstuff(wire) == expected


def test_top_part() -> None:
    msg = to_crlf(b"From: a\nSubject: s\n\nl1\nl2\nl3\n")
    assert top_part(msg, 0) == b"From: a\r\nSubject: s\r\n\r\n"
    assert top_part(msg, 2) == b"From: a\r\nSubject: s\r\n\r\nl1\r\nl2\r\n"
    assert top_part(msg, 99) == msg
    assert top_part(b"From: only headers\r\n", 3) == b"From: only headers\r\n"
    assert top_part(b"\r\nbody\r\nmore\r\n", 1) == b"\r\nbody\r\n"


# -- SASL PLAIN ----------------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_decode_plain() -> None:
    assert decode_plain(b64(b"\0alice@example.test\0pw with space")) == ("", "alice@example.test", "pw with space")
    assert decode_plain(b64(b"a\0a\0p")) == ("a", "a", "p")


@pytest.mark.parametrize("response", ["=", "!!!", b64(b"no-nuls"), b64(b"\0\0pw"), b64(b"a\0b\0c\0d"),
                                      b64(b"\0\xff\0pw"), "YWJj\u00e9"])
def test_decode_plain_rejects(response: str) -> None:
    with pytest.raises(SaslError):
        decode_plain(response)


def test_valid_uidl() -> None:
    assert valid_uidl("1700000000.M1P2Q3.host")
    assert not valid_uidl("") and not valid_uidl("a b") and not valid_uidl("x" * 71)
