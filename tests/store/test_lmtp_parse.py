"""The LMTP parser and DATA reader on bytes alone."""

from __future__ import annotations

import asyncio

import pytest

from mailsift.protocols.lmtp import (Command, LMTPSyntaxError, _Input, parse_command, parse_path,
                                     verdict_folder)


def test_parse_command() -> None:
    assert parse_command(b"lhlo mx.example\r\n") == Command("LHLO", "mx.example")
    assert parse_command(b"MAIL FROM:<a@b> SIZE=5\r\n") == Command("MAIL", "FROM:<a@b> SIZE=5")
    assert parse_command(b"QUIT\n") == Command("QUIT", "")


@pytest.mark.parametrize("line", [b"MAIL FROM:<a\x00b>\r\n", b"\r\n", b"   \r\n", b"RCPT TO:<\xff@x>\r\n",
                                  b"NOOP\x01\r\n"])
def test_parse_command_refuses_garbage(line: bytes) -> None:
    with pytest.raises(LMTPSyntaxError):
        parse_command(line)


def test_parse_path() -> None:
    assert parse_path("FROM:<a@b.c> SIZE=100 BODY=8BITMIME", "FROM") == ("a@b.c", {"SIZE": "100", "BODY": "8BITMIME"})
    assert parse_path("FROM:<>", "FROM") == ("", {})
    assert parse_path("to: <x@y.z>", "TO") == ("x@y.z", {})
    assert parse_path("TO:<@relay.example:x@y.z>", "TO") == ("x@y.z", {})
    for bad in ("FROM:a@b", "TO:<a@b>", "FROM:<a b@c>", "FROM:<<a@b>>"):
        with pytest.raises(LMTPSyntaxError):
            parse_path(bad, "FROM")


def test_verdict_folder_reads_headers_only() -> None:
    assert verdict_folder(b"X-Spam-Flag: YES\r\nSubject: s\r\n\r\nbody\r\n") == "Junk"
    assert verdict_folder(b"X-Spam-Flag: yes\r\n\r\n") == "Junk"
    assert verdict_folder(b"X-Spam-Flag: NO\r\n\r\n") is None
    assert verdict_folder(b"X-Virus-Status: Infected (Eicar-Test-Signature)\r\nX-Spam-Flag: YES\r\n\r\n") == "Quarantine"
    assert verdict_folder(b"X-Virus-Status: Clean\r\n\r\n") is None
    assert verdict_folder(b"Subject: x\r\n\r\nX-Spam-Flag: YES\r\n") is None  # in the body: not a header
    assert verdict_folder(b"X-Virus-Status:\r\n Infected (folded)\r\n\r\n") == "Quarantine"
    assert verdict_folder(b"X-Spam-Flag-Untrusted: YES\r\n\r\n") is None


def run_input(chunks: list[bytes], limit: int = 1000) -> tuple[tuple[bytes | None, bool], bytes]:
    async def main() -> tuple[tuple[bytes | None, bool], bytes]:
        reader = asyncio.StreamReader()
        for c in chunks:
            reader.feed_data(c)
        reader.feed_eof()
        inp = _Input(reader, 5)
        result = await inp.data(limit)
        rest = await inp.line()
        return result, rest or b""
    return asyncio.run(main())


def test_data_unstuffs_and_keeps_what_follows() -> None:
    (data, big), rest = run_input([b"..a\r\nb\r\n...\r\n", b".\r\nQUIT\r\n"])
    assert data == b".a\r\nb\r\n..\r\n" and not big and rest == b"QUIT\r\n"


def test_data_unstuffs_lines_after_a_bare_lf() -> None:
    """A client that sends bare LF line ends still dot-stuffs its lines (swaks, scripts): the
    stored message must not keep the extra dot (Dovecot's dot stream drops it too)."""
    (data, big), rest = run_input([b"..a\nb\n..c\n...\r\n.\r\nQUIT\r\n"])
    assert data == b".a\nb\n.c\n..\r\n" and not big and rest == b"QUIT\r\n"
    (data, _), _ = run_input([b"x\n.\ny\r\n.\r\n"])  # a lone dot after a bare LF does not end it
    assert data == b"x\n.\ny\r\n"


def test_data_terminator_split_across_reads() -> None:
    for cut in range(1, 12):
        raw = b"x\r\ny\r\n.\r\nNOOP\r\n"
        (data, big), rest = run_input([raw[:cut], raw[cut:]])
        assert data == b"x\r\ny\r\n" and rest == b"NOOP\r\n", cut


def test_empty_message_and_lone_dot_lines() -> None:
    (data, _), _ = run_input([b".\r\n"])
    assert data == b""
    (data, _), _ = run_input([b"a\r\n.x\r\n\r\n.\r\n"])
    assert data == b"a\r\n.x\r\n\r\n"  # ".x" was not stuffed by a sloppy client: kept


def test_data_beyond_limit_is_drained_and_flagged() -> None:
    (data, big), rest = run_input([b"y" * 500 + b"\r\n"] * 10 + [b".\r\nRSET\r\n"], limit=1000)
    assert big and data == b"" and rest == b"RSET\r\n"


def test_data_eof_midway() -> None:
    (data, big), _ = run_input([b"partial message\r\n"])
    assert data is None
