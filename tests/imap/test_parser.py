"""Parsing IMAP commands from bytes: tags, atoms, strings, literals, sequence sets, search keys,
fetch attributes. Every malformed command raises ParseError (the session answers BAD)."""

import datetime as dt

import pytest
from hypothesis import given, strategies as st

from mailsift.protocols.imap.parser import (
    BadCharset, Limits, ParseError, SearchKey, literal_marker, parse_command, parse_sequence_set,
)


def cmd(data: bytes):
    return parse_command(data)


def test_tag_and_name_are_case_insensitive_for_the_name() -> None:
    c = cmd(b"A001 capability")
    assert (c.tag, c.name, c.uid, c.args) == (b"A001", "CAPABILITY", False, {})


def test_login_with_atoms_quoted_and_literal() -> None:
    c = cmd(b'a LOGIN "us\\"er" {6}\r\nse cr\\')
    assert c.args == {"user": b'us"er', "password": b"se cr\\"}


def test_literal_marker() -> None:
    assert literal_marker(b"a APPEND INBOX {12}") == (12, False)
    assert literal_marker(b"a APPEND INBOX {12+}") == (12, True)
    assert literal_marker(b"a LOGIN x y") is None
    assert literal_marker(b"a LOGIN {x}") is None


def test_append_with_flags_date_and_nonsync_literal() -> None:
    c = cmd(b'a APPEND "Sent Items" (\\Seen $Junk \\seen) " 5-Jan-2020 10:00:00 -0130" {5+}\r\nhello')
    assert c.args["mailbox"] == "Sent Items"
    assert c.args["flags"] == ("\\Seen", "$Junk")
    assert c.args["date"] == dt.datetime(2020, 1, 5, 10, 0, tzinfo=dt.timezone(-dt.timedelta(hours=1, minutes=30)))
    assert c.args["message"] == b"hello"


def test_append_needs_a_literal() -> None:
    with pytest.raises(ParseError):
        cmd(b'a APPEND INBOX "not a literal"')


def test_mailbox_names_decode_modified_utf7_and_inbox_is_case_insensitive() -> None:
    assert cmd(b"a SELECT Entw&APw-rfe").args["mailbox"] == "Entwürfe"
    assert cmd(b"a SELECT inbox").args["mailbox"] == "INBOX"
    assert cmd(b"a CREATE inbox.Sub").args["mailbox"] == "INBOX.Sub"
    assert cmd(b"a EXAMINE Junk (CONDSTORE)").args == {"mailbox": "Junk", "condstore": True}


def test_sequence_sets() -> None:
    s = parse_sequence_set("1:3,5,7:*")
    assert s.resolve(10) == [(1, 3), (5, 5), (7, 10)]
    assert [n for n in range(1, 11) if s.contains(n, 10)] == [1, 2, 3, 5, 7, 8, 9, 10]
    assert parse_sequence_set("*:4").resolve(2) == [(2, 4)]
    assert parse_sequence_set("*").contains(9, 9)
    for bad in ("", "0", "1:", ":2", "1,,2", "a", "1:0", "4294967296"):
        with pytest.raises(ParseError):
            parse_sequence_set(bad)


def test_fetch_attributes_and_macros() -> None:
    c = cmd(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.100> BODY[1.2.MIME] "
            b"RFC822.SIZE BODY[] BODY[2.HEADER.FIELDS.NOT (X-A)] BODY[3]<5.1>)")
    assert c.uid and c.name == "FETCH"
    atts = c.args["atts"]
    assert atts[0].name == "FLAGS"
    a = atts[1]
    assert a.peek and a.section.text == "HEADER.FIELDS" and a.section.fields == ("From", "To")
    assert a.partial == (0, 100) and a.response_name() == 'BODY[HEADER.FIELDS (From "To")]<0>'
    assert atts[2].section.part == (1, 2) and atts[2].section.text == "MIME" and atts[2].sets_seen
    assert atts[4].section.part == () and atts[4].section.text is None
    assert atts[5].section.part == (2,) and atts[5].section.text == "HEADER.FIELDS.NOT"
    assert atts[6].partial == (5, 1)
    full = cmd(b"a FETCH 1 FULL").args["atts"]
    assert [x.name for x in full] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]


@pytest.mark.parametrize("bad", [
    b"a FETCH 1 BODY[1.X]", b"a FETCH 1 BODY[0]", b"a FETCH 1 BODY[MIME]", b"a FETCH 1 BODY[]<1.0>",
    b"a FETCH 1 (FLAGS", b"a FETCH 1 ()", b"a FETCH 1 BOGUS", b"a FETCH 1 BODY[HEADER.FIELDS ()]",
    b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]",
])
def test_bad_fetch_attributes(bad: bytes) -> None:
    with pytest.raises(ParseError) as e:
        cmd(bad)
    assert e.value.tag == b"a"


def test_search_keys() -> None:
    c = cmd(b"a UID SEARCH CHARSET UTF-8 OR FROM {7}\r\nJ\xc3\xbcrgen NOT (SEEN 1:*) SINCE 1-Feb-2020 "
            b"HEADER X-Spam-Flag YES LARGER 10 UNKEYWORD $Junk UID 5:*")
    assert c.args["charset"] == "UTF-8"
    key = c.args["key"]
    assert key.op == "AND"
    or_key, since, header, larger, unkw, uid = key.args
    assert or_key.args[0] == SearchKey("HEADER", ("From", "Jürgen"))
    assert or_key.args[1].op == "NOT" and or_key.args[1].args[0].op == "AND"
    assert since == SearchKey("SINCE", (dt.date(2020, 2, 1),))
    assert header == SearchKey("HEADER", ("X-Spam-Flag", "YES"))
    assert larger == SearchKey("LARGER", (10,))
    assert unkw == SearchKey("UNKEYWORD", ("$Junk",))
    assert uid.op == "UID"


def test_search_unknown_charset_is_its_own_error() -> None:
    with pytest.raises(BadCharset):
        cmd(b"a SEARCH CHARSET KOI8-R BODY x")


@pytest.mark.parametrize("bad", [b"a SEARCH", b"a SEARCH FOO", b"a SEARCH OR SEEN", b"a SEARCH SINCE 31-Feb-2020",
                                 b"a SEARCH LARGER x", b"a SEARCH (SEEN", b"a SEARCH HEADER From"])
def test_bad_search(bad: bytes) -> None:
    with pytest.raises(ParseError):
        cmd(bad)


def test_store_forms() -> None:
    assert cmd(b"a STORE 1:2 +FLAGS.SILENT (\\Deleted $Junk)").args == {
        "set": parse_sequence_set("1:2"), "mode": "+", "silent": True, "flags": ("\\Deleted", "$Junk"),
        "unchangedsince": None}
    c = cmd(b"a UID STORE 7 (UNCHANGEDSINCE 12) FLAGS \\Seen")
    assert c.args["mode"] == "=" and c.args["flags"] == ("\\Seen",) and c.args["unchangedsince"] == 12
    c = cmd(b"a STORE 1 -FLAGS ()")
    assert c.args["flags"] == ()
    for bad in (b"a STORE 1 FLAGS (\\Recent)", b"a STORE 1 FLAGZ (\\Seen)", b"a STORE 1 +FLAGS (\\Bogus)"):
        with pytest.raises(ParseError):
            cmd(bad)


def test_list_status_copy_move_enable_id() -> None:
    assert cmd(b'a LIST "" %').args["patterns"] == ("%",)
    assert cmd(b'a LIST "" (INBOX* Junk) RETURN (SPECIAL-USE)').args["returns"] == ("SPECIAL-USE",)
    assert cmd(b"a STATUS Junk (MESSAGES UIDNEXT UNSEEN)").args["items"] == ("MESSAGES", "UIDNEXT", "UNSEEN")
    assert cmd(b"a UID MOVE 1:3 Junk").args["mailbox"] == "Junk"
    assert cmd(b"a ENABLE CONDSTORE utf8=accept").args["capabilities"] == ("CONDSTORE", "UTF8=ACCEPT")
    assert cmd(b'a ID ("name" "mbsync" "version" NIL)').args["params"] == {"name": "mbsync", "version": None}
    assert cmd(b"a ID NIL").args["params"] is None
    assert cmd(b"a UID EXPUNGE 4:5").args["set"].resolve(9) == [(4, 5)]


@pytest.mark.parametrize("bad,tag", [
    (b"", None), (b"* NOOP", None), (b"+ NOOP", None), (b"a", b"a"), (b"a NOOP ", b"a"),
    (b"a NOOP x", b"a"), (b"a UID NOOP", b"a"), (b"a BOGUS", b"a"), (b'a LOGIN "x', b"a"),
    (b"a LOGIN x {5}\r\nab", b"a"), (b"a LOGIN x  y", b"a"), (b"a SELECT", b"a"),
    (b'a LOGIN "a\x00b" c', b"a"), (b"a LOGIN \xff c", b"a"),
])
def test_syntax_errors_carry_the_tag(bad: bytes, tag: bytes | None) -> None:
    with pytest.raises(ParseError) as e:
        cmd(bad)
    assert e.value.tag == tag


def test_command_size_is_bounded() -> None:
    with pytest.raises(ParseError):
        parse_command(b"a NOOP" + b" " * 100, Limits(max_command=50))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        parse_command(data)
    except ParseError:
        pass
