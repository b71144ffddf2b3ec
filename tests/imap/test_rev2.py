"""IMAP4rev2 (RFC 9051) beside IMAP4rev1, over the wire against a real `mailsift serve`: each
change a session gets from `ENABLE IMAP4rev2`, side by side with a session that did not enable
it, which must be answered as before."""

from __future__ import annotations

import re
import time

import pytest

from imap.wire import Wire
from mailsift.protocols.imap import mutf7, rev2

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"


def message(n: int) -> bytes:
    return (f"From: bob@example.test\r\nTo: {ALICE}\r\nSubject: rev2 test {n}\r\n"
            f"Message-ID: <rev2-{n}@example.test>\r\n\r\nbody {n}\r\n").encode()


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {ALICE: ALICE_PW}, prefix="mailsift-rev2-")


def rev1(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(ALICE, ALICE_PW)
    return w


def rev2_session(srv) -> Wire:
    w = rev1(srv)
    untagged, done = w.command("ENABLE IMAP4rev2")
    assert ok(done) and untagged == [b"* ENABLED IMAP4rev2"], (untagged, done)
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def fresh(w: Wire, folder: str, n: int) -> None:
    """A folder holding n messages (no flags), via APPEND."""
    w.command(f"DELETE {folder}")
    assert ok(w.command(f"CREATE {folder}")[1])
    for i in range(1, n + 1):
        data = message(i)
        assert ok(w.command(f"APPEND {folder} () ".encode() + b"{%d+}\r\n" % len(data) + data)[1])


def until(w: Wire, pattern: bytes, timeout: float = 15.0) -> list[bytes]:
    """NOOP until an untagged response matches `pattern` (news from another worker process takes
    a moment); every untagged response seen on the way."""
    seen: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        untagged, done = w.command("NOOP")
        assert ok(done)
        seen += untagged
        if any(re.search(pattern, u) for u in untagged):
            return seen
        time.sleep(0.05)
    raise AssertionError(f"no {pattern!r} within {timeout} s: {seen}")


def test_capability_and_enable(srv):
    w = rev1(srv)
    untagged, _ = w.command("CAPABILITY")
    caps = untagged[0].split()
    assert b"IMAP4rev1" in caps and b"IMAP4rev2" in caps
    untagged, done = w.command("ENABLE imap4rev2")  # capability names are case-insensitive
    assert ok(done) and untagged == [b"* ENABLED IMAP4rev2"]
    untagged, done = w.command("ENABLE IMAP4rev2")  # already enabled: not listed again
    assert ok(done) and untagged == [b"* ENABLED"]
    w.close()


def test_search_answers_esearch_only_after_enable(srv):
    w1, w2 = rev1(srv), rev2_session(srv)
    fresh(w1, "RevSearch", 3)
    for w in (w1, w2):
        assert ok(w.command("SELECT RevSearch")[1])
    untagged, done = w1.command("SEARCH ALL")
    assert ok(done) and untagged == [b"* SEARCH 1 2 3"]
    untagged, done = w1.command("UID SEARCH 2:3")
    assert ok(done) and re.fullmatch(rb"\* SEARCH \d+ \d+", untagged[0])

    untagged, done = w2.command("SEARCH ALL")
    tag = done.split()[0].decode()
    assert ok(done) and untagged == [f'* ESEARCH (TAG "{tag}") ALL 1:3'.encode()]
    untagged, done = w2.command("UID SEARCH ALL")
    tag = done.split()[0].decode()
    assert ok(done) and len(untagged) == 1
    assert re.fullmatch(rf'\* ESEARCH \(TAG "{tag}"\) UID ALL \d+:\d+'.encode(), untagged[0]), untagged
    untagged, done = w2.command("SEARCH SUBJECT nothing-like-it")
    tag = done.split()[0].decode()
    assert ok(done) and untagged == [f'* ESEARCH (TAG "{tag}")'.encode()]
    assert not any(u.startswith(b"* SEARCH") for u in untagged)
    # an explicit RETURN is answered alike in both
    for w in (w1, w2):
        untagged, done = w.command("SEARCH RETURN (COUNT) ALL")
        assert ok(done) and untagged[0].endswith(b" COUNT 3")
    # SEARCHRES's $ works after the rev2 ESEARCH
    untagged, done = w2.command("SEARCH RETURN (SAVE) 2")
    assert ok(done) and untagged == []
    untagged, done = w2.command("FETCH $ (FLAGS)")
    assert ok(done) and untagged == [b"* 2 FETCH (FLAGS ())"]
    w1.close()
    w2.close()


def test_no_recent_after_enable_and_no_claim(srv):
    """Deliveries into INBOX (the only test of the module that delivers)."""
    for i in (1, 2):
        srv.deliver(ALICE, message(i))
    w2 = rev2_session(srv)
    untagged, done = w2.command("SELECT INBOX")
    assert ok(done)
    assert not any(b"RECENT" in u for u in untagged), untagged
    assert not any(b"[UNSEEN" in u for u in untagged), untagged  # RFC 9051 6.3.2 has no UNSEEN
    assert b'* LIST (\\HasNoChildren) "." INBOX' in untagged, untagged
    assert b"* 2 EXISTS" in untagged
    untagged, done = w2.command("FETCH 1:* (FLAGS)")
    assert ok(done) and not any(b"\\Recent" in u for u in untagged), untagged
    # the rev2 session claimed nothing: a rev1 session still sees both messages recent
    w1 = rev1(srv)
    untagged, done = w1.command("SELECT INBOX")
    assert ok(done) and b"* 2 RECENT" in untagged and b"* OK [UNSEEN 1] First unseen" in untagged
    assert not any(u.startswith(b"* LIST") for u in untagged)
    untagged, _ = w1.command("FETCH 1 (FLAGS)")
    assert untagged == [b"* 1 FETCH (FLAGS (\\Recent))"]
    # a new message: EXISTS to both, RECENT (and \Recent) only to the rev1 session
    srv.deliver(ALICE, message(3))
    seen2 = until(w2, rb"^\* 3 EXISTS$")
    assert not any(b"RECENT" in u for u in seen2), seen2
    seen1 = until(w1, rb"^\* 3 EXISTS$")
    assert b"* 3 RECENT" in seen1, seen1
    untagged, _ = w1.command("FETCH 3 (FLAGS)")
    assert untagged == [b"* 3 FETCH (FLAGS (\\Recent))"]
    untagged, _ = w2.command("FETCH 3 (FLAGS)")
    assert untagged == [b"* 3 FETCH (FLAGS ())"]
    # and in IDLE: EXISTS without RECENT
    w2.send(b"i1 IDLE\r\n")
    assert w2.read_response().startswith(b"+ ")
    srv.deliver(ALICE, message(4))
    assert w2.read_response() == b"* 4 EXISTS"
    w2.send(b"DONE\r\n")
    assert w2.read_response().startswith(b"i1 OK")
    w1.close()
    w2.close()


def test_enable_while_selected(srv):
    """ENABLE IMAP4rev2 with a mailbox selected: its \\Recent messages lose the flag at once."""
    w1 = rev1(srv)
    fresh(w1, "RevLate", 1)
    untagged, done = w1.command("SELECT RevLate")
    assert ok(done) and b"* 1 RECENT" in untagged
    assert w1.command("FETCH 1 (FLAGS)")[0] == [b"* 1 FETCH (FLAGS (\\Recent))"]
    untagged, done = w1.command("ENABLE IMAP4rev2")
    assert ok(done) and untagged == [b"* ENABLED IMAP4rev2"]
    assert w1.command("FETCH 1 (FLAGS)")[0] == [b"* 1 FETCH (FLAGS ())"]
    untagged, done = w1.command("SEARCH ALL")
    assert untagged == [f'* ESEARCH (TAG "{done.split()[0].decode()}") ALL 1'.encode()]
    w1.close()


def test_mailbox_names_utf8_after_enable(srv):
    w1, w2 = rev1(srv), rev2_session(srv)
    name = "Grüße"
    utf8 = name.encode()
    w2.command(b'DELETE "' + utf8 + b'"')
    assert ok(w2.command(b'CREATE "' + utf8 + b'"')[1])
    untagged, done = w2.command(b'LIST "" "Gr*"')
    assert ok(done) and untagged == [b'* LIST (\\HasNoChildren) "." "' + utf8 + b'"'], untagged
    untagged, done = w1.command(b'LIST "" "Gr*"')
    assert ok(done) and untagged == [b'* LIST (\\HasNoChildren) "." ' + mutf7.encode(name)], untagged
    untagged, done = w2.command(b'STATUS "' + utf8 + b'" (MESSAGES)')
    assert ok(done) and untagged == [b'* STATUS "' + utf8 + b'" (MESSAGES 0)']
    untagged, done = w2.command(b'SELECT "' + utf8 + b'"')
    assert ok(done) and b'* LIST (\\HasNoChildren) "." "' + utf8 + b'"' in untagged
    # LIST-STATUS names its folder in UTF-8 too
    untagged, done = w2.command(b'LIST "" "Gr*" RETURN (STATUS (MESSAGES))')
    assert ok(done) and b'* STATUS "' + utf8 + b'" (MESSAGES 0)' in untagged, untagged
    # `&` is an ordinary character for a rev2 client, and the two sessions agree on the name
    for nm in ("R2&amp", "R2&-x"):
        w2.command(f'DELETE "{nm}"')
        assert ok(w2.command(f'CREATE "{nm}"')[1])
        untagged, _ = w2.command(f'LIST "" "{nm}"')
        assert untagged == [f'* LIST (\\HasNoChildren) "." {nm}'.encode()], untagged
        untagged, _ = w1.command(b'LIST "" ' + mutf7.encode(nm))
        assert untagged == [b'* LIST (\\HasNoChildren) "." ' + mutf7.encode(nm)], untagged
    # a rev1 client's modified UTF-7 name is the same folder, in UTF-8 for rev2
    w1.command("DELETE Caf&AOk-")
    assert ok(w1.command("CREATE Caf&AOk-")[1])
    untagged, _ = w2.command('LIST "" Caf*')
    assert untagged == [b'* LIST (\\HasNoChildren) "." "Caf\xc3\xa9"'], untagged
    untagged, _ = w1.command('LIST "" Caf*')
    assert untagged == [b'* LIST (\\HasNoChildren) "." Caf&AOk-'], untagged
    # what is not UTF-8 is no name: NO, and nothing created
    untagged, done = w2.command(b'CREATE "bad\xff"')
    assert re.match(rb"^\S+ NO", done), done
    w1.close()
    w2.close()


def test_extensions_rev2_folds_in(srv):
    """STATUS DELETED and SIZE, SELECT's [CLOSED], LIST-EXTENDED's \\NonExistent and \\Subscribed,
    and BINARY, all in a rev2 session."""
    w2 = rev2_session(srv)
    fresh(w2, "RevExt", 2)
    assert ok(w2.command("SELECT RevExt")[1])
    assert ok(w2.command("STORE 1 +FLAGS (\\Deleted)")[1])
    untagged, done = w2.command("STATUS RevExt (MESSAGES DELETED SIZE)")
    size = sum(len(message(i)) for i in (1, 2))
    assert ok(done) and untagged == [f"* STATUS RevExt (MESSAGES 2 DELETED 1 SIZE {size})".encode()], untagged
    untagged, done = w2.command("EXAMINE RevExt")
    assert ok(done) and untagged[0] == b"* OK [CLOSED] Previous mailbox closed"
    untagged, done = w2.command("FETCH 2 (BINARY.PEEK[1])")
    assert ok(done) and untagged == [b"* 2 FETCH (BINARY[1] {8}\r\nbody 2\r\n)"], untagged
    w2.command("UNSUBSCRIBE RevGone")
    assert ok(w2.command("SUBSCRIBE RevGone")[1])
    untagged, done = w2.command('LIST (SUBSCRIBED) "" "RevGone"')
    m = re.fullmatch(rb'\* LIST \(([^)]*)\) "\." RevGone', untagged[0]) if len(untagged) == 1 else None
    assert ok(done) and m and set(m.group(1).split()) == {b"\\NonExistent", b"\\Subscribed"}, untagged
    w2.close()


def test_delete_with_children_haschildren(srv):
    w1, w2 = rev1(srv), rev2_session(srv)
    w1.command("DELETE RevPar.kid")
    w1.command("DELETE RevPar")
    assert ok(w1.command("CREATE RevPar")[1])
    assert ok(w1.command("CREATE RevPar.kid")[1])
    assert ok(w2.command("DELETE RevPar")[1])  # a folder with children may go; the name is \Noselect
    _, done = w2.command("DELETE RevPar")      # \Noselect with children: refused (RFC 9051 6.3.4)
    assert re.match(rb"^\S+ NO \[HASCHILDREN\] ", done), done
    _, done = w1.command("DELETE RevPar")
    assert re.match(rb"^\S+ NO \[CANNOT\] ", done), done
    _, done = w2.command("DELETE INBOX")  # no children involved: as before
    assert re.match(rb"^\S+ NO \[CANNOT\] ", done), done
    assert ok(w2.command("DELETE RevPar.kid")[1])
    _, done = w2.command("DELETE RevPar")  # nothing left of the name
    assert re.match(rb"^\S+ NO \[NONEXISTENT\] ", done), done
    w1.close()
    w2.close()


def test_rev1_session_unchanged(srv):
    """Without ENABLE the SELECT answer has its RFC 3501 form: FLAGS, PERMANENTFLAGS, EXISTS,
    RECENT, UNSEEN, UIDVALIDITY, UIDNEXT, and no LIST."""
    w1 = rev1(srv)
    fresh(w1, "RevOne", 1)
    untagged, done = w1.command("SELECT RevOne")
    assert ok(done)
    kinds = [re.sub(rb"\d+", b"n", u.split(b"]")[0]) for u in untagged]
    assert kinds[0].startswith(b"* FLAGS (") and kinds[1].startswith(b"* OK [PERMANENTFLAGS (")
    assert kinds[2:] == [b"* n EXISTS", b"* n RECENT", b"* OK [UNSEEN n", b"* OK [UIDVALIDITY n",
                         b"* OK [UIDNEXT n"], kinds
    untagged, _ = w1.command("SEARCH ALL")
    assert untagged == [b"* SEARCH 1"]
    w1.close()


def test_name_codec_units():
    assert rev2.encode_name("INBOX") == b"INBOX"
    assert rev2.encode_name("a b") == b'"a b"'
    assert rev2.encode_name("Grüße") == b'"Gr\xc3\xbc\xc3\x9fe"'
    assert rev2.encode_name('Gr"ü') == b'"Gr\\"\xc3\xbc"'
    assert rev2.decode_name(b"Caf&AOk-") == "Caf&AOk-"
    assert rev2.decode_name("Grüße".encode()) == "Grüße"
    for bad in (b"bad\xff", b"a\x01b", b"a\x7fb"):
        with pytest.raises(rev2.InvalidUTF8Name):
            rev2.decode_name(bad)


def test_parse_command_utf8_names():
    """The parser reads names as modified UTF-7 unless told the session is IMAP4rev2, and the
    switch lasts one call."""
    from mailsift.protocols.imap.parser import InvalidMailboxName, ParseError, parse_command
    assert parse_command(b'a SELECT "a&-b"').args["mailbox"] == "a&b"
    assert parse_command(b'a SELECT "a&-b"', utf8_names=True).args["mailbox"] == "a&-b"
    assert parse_command(b"a CREATE Caf&AOk-").args["mailbox"] == "Caf\u00e9"
    assert parse_command(b"a CREATE Caf&AOk-", utf8_names=True).args["mailbox"] == "Caf&AOk-"
    assert parse_command("a RENAME \"Grüße\" \"x&y\"".encode(), utf8_names=True).args == {
        "old": "Grüße", "new": "x&y"}
    cmd = parse_command('a LIST "Grü" "&*"'.encode(), utf8_names=True)
    assert cmd.args["reference"] == "Grü" and cmd.args["patterns"] == ("&*",)
    assert parse_command(b'a SELECT "a&-b"').args["mailbox"] == "a&b"  # not left switched on
    with pytest.raises(InvalidMailboxName):
        parse_command(b'a SELECT "bad\xff"', utf8_names=True)
    with pytest.raises(ParseError):
        parse_command(b'a LIST "" "bad\xff"', utf8_names=True)
