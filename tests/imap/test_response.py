"""Encoding response data: strings quoted or as literals, NIL, lists, atoms."""

from mailsift.protocols.imap import response
from mailsift.protocols.imap.parser import format_datetime, parse_datetime


def test_strings_quoted_when_they_can_be() -> None:
    assert response.string(b'say "hi" \\ bye') == b'"say \\"hi\\" \\\\ bye"'
    assert response.string(b"two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert response.string("Grüße") == b"{7}\r\nGr\xc3\xbc\xc3\x9fe"
    assert response.nstring(None) == b"NIL"
    assert response.astring("INBOX") == b"INBOX"
    assert response.astring("NIL") == b'"NIL"'
    assert response.astring("Sent Items") == b'"Sent Items"'


def test_nested_values() -> None:
    value = [None, 12, b"x", response.Atom.of("\\Seen"), [b"a", None], response.Literal(b"ab")]
    assert response.encode(value) == b'(NIL 12 "x" \\Seen ("a" NIL) {2}\r\nab)'


def test_status_lines() -> None:
    assert response.tagged(b"a1", "OK", "done", "READ-WRITE") == b"a1 OK [READ-WRITE] done\r\n"
    assert response.untagged("3 EXISTS") == b"* 3 EXISTS\r\n"
    assert response.continuation("ready") == b"+ ready\r\n"


def test_internaldate_round_trip() -> None:
    d = parse_datetime(" 5-Jan-2020 10:00:00 -0130")
    assert format_datetime(d) == "05-Jan-2020 10:00:00 -0130"
    assert parse_datetime(format_datetime(d)) == d
