"""LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819): the pure answer (listext.entries) on the
RFC's own examples, the grammar (parser), and the same over the wire against a real
`mailsift serve`. The comparison with Dovecot is in test_listext_dovecot.py."""

from __future__ import annotations

import re
import time

import pytest

from imap.wire import Wire
from mailsift.protocols.imap.listext import Entry, Folder, Request, entries, wildcard_match
from mailsift.protocols.imap.parser import ParseError, parse_command


def listing(folders: list[str], subscribed: list[str], selection: str = "", patterns: tuple[str, ...] = ("*",),
            returns: str = "", extended: bool = True, special: dict[str, str] | None = None) -> list[Entry]:
    special = special or {}
    req = Request("", patterns, frozenset(selection.split()), frozenset(returns.split()), extended)
    return entries(req, [Folder(f, special.get(f)) for f in folders], subscribed, "/")


def lines(found: list[Entry]) -> list[str]:
    return [f"({' '.join(e.attrs)}) {e.name}" + (" CHILDINFO" if e.childinfo else "") for e in found]


# -- the wildcard matcher ------------------------------------------------------------------------

@pytest.mark.parametrize("pattern,name,sep,expected", [
    ("*", "a/b/c", "/", True), ("%", "a/b", "/", False), ("%", "ab", "/", True),
    ("a/%", "a/b", "/", True), ("a/%", "a/b/c", "/", False), ("a/*", "a/b/c", "/", True),
    ("*2", "foo2/bar2", "/", True), ("*2", "foo2/bar1", "/", False), ("%2", "foo2/bar2", "/", False),
    ("f%o%", "foo", "/", True), ("f%%o", "fo", "/", True), ("*%*", "", "/", True),
    ("a*b*c", "aXbYc", ".", True), ("a*b*c", "aXbYd", ".", False), ("", "", ".", True),
    ("x", "X", ".", False), ("%.%", "a.b", ".", True), ("%.%", "a.b.c", ".", False),
])
def test_wildcards(pattern: str, name: str, sep: str, expected: bool) -> None:
    assert wildcard_match(pattern, name, sep) is expected


def test_wildcards_take_linear_time() -> None:
    """A regex took 1.2 s for `*******x` against 60 characters (hours for 10 stars)."""
    name = "a" * 60
    started = time.perf_counter()
    for stars in (7, 10, 40):
        assert not wildcard_match("*" * stars + "x", name, ".")
        assert not wildcard_match("%a" * 30 + "%x", name, ".")
    assert not wildcard_match("*a" * 20000 + "x", "a" * 255, ".")  # a 40 KB pattern
    assert time.perf_counter() - started < 1.0


# -- RFC 5258 section 5, examples 8 to 10 ---------------------------------------------------------

FOO = ["INBOX", "Foo", "Foo/Bar", "Foo/Baz", "Moo"]


def test_example_8_children_and_childinfo() -> None:
    assert lines(listing(FOO, [], "", ("%",), "CHILDREN")) == [
        "(\\HasNoChildren) INBOX", "(\\HasChildren) Foo", "(\\HasNoChildren) Moo"]
    # A: only Foo/Baz subscribed
    assert lines(listing(FOO, ["Foo/Baz"], "SUBSCRIBED")) == ["(\\Subscribed) Foo/Baz"]
    assert listing(FOO, ["Foo/Baz"], "SUBSCRIBED", ("%",)) == []
    assert lines(listing(FOO, ["Foo/Baz"], "SUBSCRIBED RECURSIVEMATCH", ("%",))) == ["() Foo CHILDINFO"]
    # A1: Foo subscribed too
    assert lines(listing(FOO, ["Foo", "Foo/Baz"], "SUBSCRIBED RECURSIVEMATCH", ("%",))) == [
        "(\\Subscribed) Foo CHILDINFO"]
    # A2: Foo does not exist
    assert lines(listing(["INBOX", "Foo/Bar", "Foo/Baz", "Moo"], ["Foo/Baz"], "SUBSCRIBED RECURSIVEMATCH",
                         ("%",))) == ["(\\NonExistent) Foo CHILDINFO"]
    # B: nothing subscribed
    assert listing(FOO, [], "SUBSCRIBED RECURSIVEMATCH", ("%",)) == []
    # C: Foo and Moo subscribed
    assert lines(listing(FOO, ["Foo", "Moo"], "SUBSCRIBED RECURSIVEMATCH", ("%",), "CHILDREN")) == [
        "(\\Subscribed \\HasChildren) Foo", "(\\Subscribed \\HasNoChildren) Moo"]


EX9 = ["INBOX", "foo2", "foo2/bar1", "foo2/bar2", "baz2", "baz2/bar2", "baz2/bar22", "baz2/bar222",
       "eps2", "eps2/mamba", "qux2/bar2"]
EX9_SUBS = ["foo2/bar1", "foo2/bar2", "baz2/bar2", "baz2/bar22", "baz2/bar222", "eps2", "eps2/mamba",
            "qux2/bar2"]


def test_example_9_childinfo_whether_or_not_children_match() -> None:
    got = lines(listing(EX9, EX9_SUBS, "RECURSIVEMATCH SUBSCRIBED", ("*2",)))
    assert sorted(got) == sorted([
        "() foo2 CHILDINFO", "(\\Subscribed) foo2/bar2", "(\\Subscribed) baz2/bar2",
        "(\\Subscribed) baz2/bar22", "(\\Subscribed) baz2/bar222", "(\\Subscribed) eps2 CHILDINFO",
        "(\\Subscribed) qux2/bar2"])
    # `*`: every subscribed child is listed itself, so a parent that is not subscribed is left
    # out (the SHOULD of section 3.5, and what Dovecot does); a subscribed one keeps CHILDINFO
    got = lines(listing(EX9, EX9_SUBS, "RECURSIVEMATCH SUBSCRIBED", ("*",)))
    assert "(\\Subscribed) eps2 CHILDINFO" in got and not any(" foo2 " in g or g.endswith(" foo2") for g in got)
    assert len(got) == len(EX9_SUBS)


def test_example_10_childinfo_without_children() -> None:
    folders, subs = ["INBOX", "foo"], ["foo/bar"]
    assert lines(listing(folders, [], "", ("foo", "foo/*"))) == ["() foo"]
    assert lines(listing(folders, subs, "SUBSCRIBED", ("foo/*",))) == ["(\\Subscribed \\NonExistent) foo/bar"]
    assert lines(listing(folders, subs, "SUBSCRIBED RECURSIVEMATCH", ("foo",), "CHILDREN")) == [
        "(\\HasNoChildren) foo CHILDINFO"]


def test_plain_list_reports_children_special_use_and_missing_parents() -> None:
    found = listing(["INBOX", "Junk", "a/b"], [], "", ("*",), extended=False, special={"Junk": "\\Junk"})
    assert lines(found) == ["(\\HasNoChildren) INBOX", "(\\HasNoChildren \\Junk) Junk",
                            "(\\Noselect \\HasChildren) a", "(\\HasNoChildren) a/b"]
    assert [e.selectable for e in found] == [True, True, False, True]
    # the extended form: only what was asked for
    found = listing(["INBOX", "Junk", "a/b"], ["Junk"], "", ("*",), "SUBSCRIBED", special={"Junk": "\\Junk"})
    assert lines(found) == ["() INBOX", "(\\Subscribed) Junk", "(\\NonExistent) a", "() a/b"]
    found = listing(["INBOX", "Junk", "a/b"], [], "SPECIAL-USE", ("*",), special={"Junk": "\\Junk"})
    assert lines(found) == ["(\\Junk) Junk"]


def test_list_status_only_for_folders_that_exist_and_meet_the_selection() -> None:
    found = listing(["INBOX", "P", "P/C", "Q", "Q/R"], ["P", "P/C", "Q/R", "Gone"], "SUBSCRIBED RECURSIVEMATCH",
                    ("%",))
    assert {e.name: e.selectable for e in found} == {"P": True, "Q": False, "Gone": False}
    assert lines(found) == ["(\\Subscribed \\NonExistent) Gone", "(\\Subscribed) P CHILDINFO", "() Q CHILDINFO"]


def test_several_patterns_list_each_name_once() -> None:
    found = listing(FOO, [], "", ("INBOX", "Foo/%", "*"))
    assert [e.name for e in found] == ["INBOX", "Foo", "Foo/Bar", "Foo/Baz", "Moo"]


# -- grammar ---------------------------------------------------------------------------------------

def test_extended_list_grammar() -> None:
    c = parse_command(b'a LIST (SUBSCRIBED RECURSIVEMATCH remote) "" ("INBOX" %) RETURN '
                      b'(CHILDREN STATUS (MESSAGES UNSEEN) SUBSCRIBED)')
    assert c.args["selection"] == ("SUBSCRIBED", "RECURSIVEMATCH", "REMOTE")
    assert c.args["returns"] == ("CHILDREN", "STATUS", "SUBSCRIBED")
    assert c.args["status_items"] == ("MESSAGES", "UNSEEN")
    assert c.args["patterns"] == ("INBOX", "%") and c.args["extended"]
    assert not parse_command(b'a LIST "" *').args["extended"]
    assert parse_command(b'a LIST () "" *').args["extended"]
    assert parse_command(b'a LIST "" * RETURN ()').args["extended"]
    for bad in (b'a LIST (RECURSIVEMATCH) "" %', b'a LIST (REMOTE RECURSIVEMATCH) "" %',
                b'a LIST (BOGUS) "" %', b'a LIST "" % RETURN (BOGUS)', b'a LIST "" % RETURN (STATUS)',
                b'a LIST "" % RETURN (STATUS ())', b'a LIST "" % RETURN (STATUS (BOGUS))',
                b'a LIST "" ()', b'a LSUB () "" *', b'a LSUB "" * RETURN (CHILDREN)', b'a LSUB "" (a b)'):
        with pytest.raises(ParseError):
            parse_command(bad)


# -- over the wire -----------------------------------------------------------------------------------

USER, PW = "lister@example.test", "lister-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-listext-")


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


@pytest.mark.integration
def test_capability_and_extended_list_over_the_wire(srv) -> None:
    w = connect(srv)
    caps, _ = w.command("CAPABILITY")
    assert b" LIST-EXTENDED" in caps[0] and b" LIST-STATUS" in caps[0]
    for c in ("CREATE Ex.One", "CREATE Ex.Two", "CREATE Ex.Two.Deep", "SUBSCRIBE Ex.Two.Deep",
              "SUBSCRIBE Ex.Gone"):
        assert ok(w.command(c)[1])
    msg = b"Subject: x\r\n\r\nbody\r\n"
    _, done = w.command(b"APPEND Ex.One (\\Seen) {%d+}\r\n" % len(msg) + msg)
    assert ok(done)
    _, done = w.command(b"APPEND Ex.One {%d+}\r\n" % len(msg) + msg)
    untagged, done = w.command('LIST (SUBSCRIBED RECURSIVEMATCH) "Ex." % RETURN (CHILDREN STATUS (MESSAGES UNSEEN))')
    assert ok(done)
    assert sorted(untagged) == sorted([
        b'* LIST (\\HasChildren) "." Ex.Two (CHILDINFO ("SUBSCRIBED"))',
        b'* LIST (\\Subscribed \\NonExistent \\HasNoChildren) "." Ex.Gone'])
    untagged, done = w.command('LIST "" ("Ex.One" "Ex.T*") RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))')
    assert untagged == [b'* LIST () "." Ex.One', b"* STATUS Ex.One (MESSAGES 2 UNSEEN 1 UIDNEXT 3)",
                        b'* LIST () "." Ex.Two', b"* STATUS Ex.Two (MESSAGES 0 UNSEEN 0 UIDNEXT 1)",
                        b'* LIST () "." Ex.Two.Deep', b"* STATUS Ex.Two.Deep (MESSAGES 0 UNSEEN 0 UIDNEXT 1)"]
    _, done = w.command('LIST (RECURSIVEMATCH) "" %')
    assert b" BAD " in done
    _, done = w.command('LSUB () "" *')
    assert b" BAD " in done
    # the plain form is unchanged: children and special use always, the empty pattern
    untagged, _ = w.command('LIST "" Junk')
    assert untagged == [b'* LIST (\\HasNoChildren \\Junk) "." Junk']
    untagged, _ = w.command('LIST "" ""')
    assert untagged == [b'* LIST (\\Noselect) "." ""']
    # a pattern that took hours as a regular expression
    started = time.monotonic()
    untagged, done = w.command('LIST "" "' + "*" * 30 + 'x"')
    assert ok(done) and time.monotonic() - started < 5
    w.close()
