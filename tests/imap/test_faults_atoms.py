"""Issue 14, conformance: `[` is an ordinary atom character (RFC 3501 9: ATOM-CHAR excludes only
`]` of the resp-specials, and a mailbox astring may hold both); only the BODY[...] and BINARY[...]
fetch attributes open a section that may hold spaces and parentheses. A name that is no valid
modified UTF-7 answers NO, as Dovecot does, not BAD."""

from __future__ import annotations

import pytest

from imap.test_caches import ok
from imap.wire import Wire
from mailsift.protocols.imap.parser import InvalidMailboxName, ParseError, parse_command

ODD = b"!#$&'+,-.0123456789:;<=>?@^_`|[}"  # every atom character of the conformance suite's name
USER, PW = "nora@example.test", "nora-pw"


def test_an_atom_may_hold_an_open_bracket() -> None:
    c = parse_command(b"a LIST \"\" " + ODD + b"%*")
    assert c.args["patterns"] == (ODD.decode() + "%*",)
    assert parse_command(b"a SELECT foo[bar").args["mailbox"] == "foo[bar"
    assert parse_command(b"a CREATE a[b]c").args["mailbox"] == "a[b]c"


def test_a_name_of_broken_modified_utf7_is_refused_as_no_such_mailbox_not_a_syntax_error() -> None:
    with pytest.raises(InvalidMailboxName):
        parse_command(b"a SELECT " + ODD)


def test_sections_still_hold_spaces_and_parentheses() -> None:
    c = parse_command(b"a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From To)]<0.10> body[1.MIME])")
    assert [a.section.spec for a in c.args["atts"]] == ["HEADER.FIELDS (From To)", "1.MIME"]
    with pytest.raises(ParseError, match="unbalanced"):
        parse_command(b"a FETCH 1 (BODY[HEADER.FIELDS (From)")


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imapatoms-")


def test_select_of_the_conformance_name_answers_no_and_list_with_it_works(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    _, done = w.command(b"SELECT " + ODD)
    assert done.startswith(b"w2 NO "), done
    untagged, done = w.command(b'LIST "" ' + ODD + b"%*")
    assert ok(done) and untagged == [], (untagged, done)
    # a name with `[` that is valid: created, listed, selected like any other
    _, done = w.command(b"CREATE br[ack")
    assert ok(done), done
    untagged, done = w.command(b'LIST "" br[a%')
    assert ok(done) and untagged == [b'* LIST (\\HasNoChildren) "." br[ack'], untagged
    _, done = w.command(b"SELECT br[ack")
    assert ok(done), done
    _, done = w.command(b"SELECT no[such")
    assert b" NO [NONEXISTENT]" in done, done
    w.close()
