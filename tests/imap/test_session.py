"""Protocol transcripts against a real `mailsift serve` (IMAP + LMTP on loopback): every command,
the state machine, several sessions on one mailbox, IDLE, bounds and bad input."""

from __future__ import annotations

import base64
import re
import time

import pytest

from imap.wire import Wire, fetch_items, parse_values

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"
BOB, BOB_PW = "bob@example.test", "bob-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin, tmp_path_factory):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {ALICE: ALICE_PW, BOB: BOB_PW}, prefix="mailsift-imap-")


def connect(srv, user: str | None = ALICE, password: str | None = None) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    if user:
        w.login(user, password or srv.passwords[user])
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def msg(subject: str, body: str = "body\r\n", extra: str = "") -> bytes:
    return f"From: Sender <sender@example.test>\r\nTo: alice@example.test\r\nSubject: {subject}\r\n{extra}\r\n{body}".encode()


def append(w: Wire, folder: str, data: bytes, flags: str = "", date: str | None = None) -> int:
    args = f"{folder} " + (f"({flags}) " if flags else "") + (f'"{date}" ' if date else "")
    _, done = w.command(args.join(["APPEND ", ""]).encode() + b"{%d+}\r\n" % len(data) + data)
    assert ok(done), done
    return int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1))


def fresh_folder(w: Wire, name: str) -> None:
    w.command(f"DELETE {name}")
    _, done = w.command(f"CREATE {name}")
    assert ok(done), done


def test_greeting_capability_and_logout(srv) -> None:
    w = connect(srv, None)
    assert w.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    untagged, done = w.command("CAPABILITY")
    caps = untagged[0].split()
    for cap in (b"IMAP4rev1", b"LITERAL+", b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"NAMESPACE", b"ID",
                b"ENABLE", b"UNSELECT", b"CHILDREN", b"SASL-IR", b"AUTH=PLAIN"):
        assert cap in caps
    assert ok(done)
    untagged, done = w.command("LOGOUT")
    assert untagged[0].startswith(b"* BYE") and ok(done)
    w.close()


def test_login_failures_look_the_same_and_success_works(srv) -> None:
    w = connect(srv, None)
    _, bad_pw = w.command(f'LOGIN "{ALICE}" "wrong"')
    _, no_user = w.command('LOGIN "nobody@example.test" "wrong"')
    assert bad_pw.split(b" ", 1)[1] == no_user.split(b" ", 1)[1] == b"NO [AUTHENTICATIONFAILED] Authentication failed"
    _, done = w.command(f'LOGIN "{ALICE}" "{ALICE_PW}"')
    assert ok(done) and b"[CAPABILITY " in done
    _, done = w.command(f'LOGIN "{ALICE}" "{ALICE_PW}"')
    assert b" BAD " in done  # not valid once authenticated
    w.close()


def test_authenticate_plain_with_initial_response_and_continuation(srv) -> None:
    token = base64.b64encode(f"\0{BOB}\0{BOB_PW}".encode())
    w = connect(srv, None)
    _, done = w.command(b"AUTHENTICATE PLAIN " + token)
    assert ok(done)
    w.close()
    w = connect(srv, None)
    w.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert w.read_line().startswith(b"+")
    w.send(token + b"\r\n")
    assert ok(w.read_response())
    w.close()
    w = connect(srv, None)
    w.send(b"a1 AUTHENTICATE PLAIN\r\n")
    assert w.read_line().startswith(b"+")
    w.send(b"*\r\n")
    assert w.read_response().startswith(b"a1 BAD")
    _, done = w.command(b"AUTHENTICATE PLAIN " + base64.b64encode(f"{ALICE}\0{BOB}\0{BOB_PW}".encode()))
    assert b"NO [AUTHENTICATIONFAILED]" in done  # no proxy logins
    w.close()


def test_syntax_errors_answer_bad_and_the_session_goes_on(srv) -> None:
    w = connect(srv)
    for bad in (b"a1 FETCH", b"a2 FROB", b'a3 LOGIN "x', b"a4 SELECT", b"(((", b"a5 UID FOO 1",
                b"a6 SEARCH UNKNOWNKEY", b"a7 FETCH 1 BODY[1.X]"):
        w.send(bad + b"\r\n")
        reply = w.read_response()
        assert b" BAD " in reply, (bad, reply)
    _, done = w.command("SELECT INBOX")
    assert ok(done)
    _, done = w.command("FETCH 999999 FLAGS")
    assert b" BAD " in done  # beyond the mailbox
    _, done = w.command("SEARCH CHARSET KOI8-R TEXT x")
    assert b"NO [BADCHARSET" in done
    _, done = w.command("NOOP")
    assert ok(done)
    w.close()


def test_commands_need_the_right_state(srv) -> None:
    w = connect(srv, None)
    for c in ("SELECT INBOX", "LIST \"\" *", "FETCH 1 FLAGS", "CREATE X"):
        _, done = w.command(c)
        assert b" BAD " in done, c
    w.login(ALICE, ALICE_PW)
    for c in ("FETCH 1 FLAGS", "EXPUNGE", "CLOSE", "STORE 1 +FLAGS (\\Seen)", "UID SEARCH ALL"):
        _, done = w.command(c)
        assert b" BAD " in done, c
    w.close()


def test_select_examine_and_recent_seen_by_one_session(srv) -> None:
    a = connect(srv)
    fresh_folder(a, "RecentBox")
    for i in range(3):
        append(a, "RecentBox", msg(f"r{i}"), "\\Seen" if i == 0 else "")
    b = connect(srv)
    untagged, done = b.command("EXAMINE RecentBox")
    assert b"[READ-ONLY]" in done
    assert b"* 3 EXISTS" in untagged and b"* 3 RECENT" in untagged  # examine does not take them
    untagged, done = a.command("SELECT RecentBox")
    assert b"[READ-WRITE]" in done
    text = b"\n".join(untagged)
    assert b"* 3 EXISTS" in text and b"* 3 RECENT" in text
    assert b"[UNSEEN 2]" in text and b"[UIDVALIDITY " in text and b"[UIDNEXT 4]" in text
    assert b"PERMANENTFLAGS (" in text and b"\\*)" in text
    untagged, _ = b.command("SELECT RecentBox")
    assert b"* 0 RECENT" in untagged  # a's session already has them
    untagged, _ = a.command("FETCH 1:* (FLAGS)")
    assert all(b"\\Recent" in u for u in untagged)
    a.close()
    b.close()


def test_append_fetch_internaldate_flags_and_literals(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "AppendBox")
    data = msg("appended", "line one\nline two\n")  # bare LF: sizes count CRLF
    uid = append(w, "AppendBox", data, "\\Flagged $Junk", "05-Jan-2020 10:11:12 +0100")
    # a synchronizing literal: the server asks for the data
    w.send(b"s1 APPEND AppendBox {%d}\r\n" % len(data))
    assert w.read_line().startswith(b"+ ")
    w.send(data + b"\r\n")
    assert ok(w.read_response())
    w.command("SELECT AppendBox")
    untagged, done = w.command(f"UID FETCH {uid} (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[TEXT] RFC822.HEADER)")
    items = fetch_items(untagged[0])
    assert items["UID"] == uid
    assert set(items["FLAGS"]) >= {"\\Flagged", "$Junk"}
    assert items["INTERNALDATE"] == b"05-Jan-2020 09:11:12 +0000"
    assert items["RFC822.SIZE"] == len(data) + data.count(b"\n") - data.count(b"\r\n")
    assert items["BODY[TEXT]"] == b"line one\r\nline two\r\n"
    assert items["RFC822.HEADER"].startswith(b"From: Sender")
    _, done = w.command(b"APPEND NoSuchFolder {3+}\r\nabc")
    assert b"NO [TRYCREATE]" in done
    w.close()


def test_fetch_body_sets_seen_but_peek_and_examine_do_not(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "SeenBox")
    for i in range(3):
        append(w, "SeenBox", msg(f"s{i}"))
    w.command("EXAMINE SeenBox")
    w.command("FETCH 1 BODY[]")
    w.command("SELECT SeenBox")
    untagged, _ = w.command("FETCH 1 (FLAGS)")
    assert "\\Seen" not in fetch_items(untagged[0])["FLAGS"]
    untagged, _ = w.command("FETCH 2 (BODY.PEEK[])")
    untagged, _ = w.command("FETCH 3 (BODY[HEADER])")
    assert "\\Seen" in fetch_items(untagged[0])["FLAGS"]  # the new flags come with the data
    untagged, _ = w.command("FETCH 1:3 (FLAGS)")
    seen = ["\\Seen" in fetch_items(u)["FLAGS"] for u in untagged]
    assert seen == [False, False, True]
    w.close()


def test_store_flags_and_keywords(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "StoreBox")
    for i in range(3):
        append(w, "StoreBox", msg(f"k{i}"))
    w.command("SELECT StoreBox")
    untagged, done = w.command("STORE 1:2 +FLAGS (\\Flagged $Junk NonJunk)")
    assert ok(done) and len(untagged) == 2
    assert set(fetch_items(untagged[0])["FLAGS"]) >= {"\\Flagged", "$Junk", "NonJunk"}
    untagged, done = w.command("STORE 1 -FLAGS.SILENT ($Junk)")
    assert ok(done) and untagged == []
    untagged, _ = w.command("UID STORE 1:* FLAGS (\\Answered)")
    assert all(b"UID " in u for u in untagged)
    untagged, _ = w.command("FETCH 1:3 FLAGS")
    assert [sorted(x for x in fetch_items(u)["FLAGS"] if x != "\\Recent") for u in untagged] == [["\\Answered"]] * 3
    _, done = w.command("STORE 1 +FLAGS (\\Bogus)")
    assert b" BAD " in done
    w.close()


def test_copy_move_expunge_with_uidplus(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Src")
    fresh_folder(w, "Dst")
    uids = [append(w, "Src", msg(f"m{i}")) for i in range(5)]
    w.command("SELECT Src")
    _, done = w.command(f"UID COPY {uids[0]}:{uids[1]} Dst")
    m = re.search(rb"\[COPYUID (\d+) (\S+) (\S+)\]", done)
    assert ok(done) and m and m.group(2) == f"{uids[0]}:{uids[1]}".encode()
    untagged, done = w.command("MOVE 3 Dst")
    assert ok(done)
    assert untagged[0].startswith(b"* OK [COPYUID ") and untagged[1] == b"* 3 EXPUNGE"
    untagged, _ = w.command("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    untagged, done = w.command("UID EXPUNGE %d" % uids[0])
    assert untagged == [b"* 1 EXPUNGE"] and ok(done)
    untagged, done = w.command("EXPUNGE")
    assert untagged == [b"* 2 EXPUNGE"]
    untagged, _ = w.command("UID SEARCH ALL")
    assert untagged == [b"* SEARCH %d %d" % (uids[1], uids[4])]
    _, done = w.command("COPY 1 NoSuchFolder")
    assert b"NO [TRYCREATE]" in done
    untagged, done = w.command("STATUS Dst (MESSAGES UIDNEXT UNSEEN)")
    assert untagged[0].endswith(b"(MESSAGES 3 UIDNEXT 4 UNSEEN 3)")
    w.close()


def test_two_sessions_see_each_others_changes_with_the_right_responses(srv) -> None:
    a = connect(srv)
    fresh_folder(a, "Shared")
    for i in range(4):
        append(a, "Shared", msg(f"x{i}"))
    b = connect(srv)
    a.command("SELECT Shared")
    b.command("SELECT Shared")
    b.command("STORE 2 +FLAGS (\\Flagged)")
    b.command("STORE 3 +FLAGS (\\Deleted)")
    _, done = b.command("EXPUNGE")
    assert ok(done)
    # a's FETCH may learn about flags but must not get EXPUNGE; message 3 is still addressable
    untagged, done = a.command("FETCH 1:4 (FLAGS)")
    assert not any(b"EXPUNGE" in u for u in untagged)
    assert any(u.startswith(b"* 2 FETCH") and b"\\Flagged" in u for u in untagged)
    untagged, done = a.command("NOOP")
    assert b"* 3 EXPUNGE" in untagged and ok(done)
    untagged, _ = a.command("SEARCH ALL")
    assert untagged == [b"* SEARCH 1 2 3"]
    append(b, "Shared", msg("new one"))
    untagged, _ = a.command("NOOP")
    assert b"* 4 EXISTS" in untagged
    a.close()
    b.close()


def test_idle_reports_an_lmtp_delivery_within_a_second(srv) -> None:
    w = connect(srv, BOB)
    w.command("SELECT INBOX")
    found = w.command("SEARCH ALL")[0][0].split()[2:]
    n = int(found[-1]) if found else 0
    w.send(b"i1 IDLE\r\n")
    assert w.read_line().startswith(b"+ ")
    srv.deliver(BOB, msg("during idle"))
    delivered = time.monotonic()  # LMTP said 250: the message is committed
    line = w.read_line()
    assert line == b"* %d EXISTS" % (n + 1)
    assert time.monotonic() - delivered < 1.0
    w.send(b"DONE\r\n")
    rest = w.read_response()
    while not rest.startswith(b"i1 "):
        rest = w.read_response()
    assert ok(rest)
    w.close()


def test_list_lsub_hierarchy_and_modified_utf7(srv) -> None:
    w = connect(srv)
    for name in ("Entw&APw-rfe", "Lists", "Lists.python", "Lists.rust"):
        w.command(f"CREATE {name}")
    untagged, _ = w.command('LIST "" %')
    names = [str(n) if not isinstance(n, bytes) else n.decode() for n in
             (parse_values(u[len(b"* LIST "):])[2] for u in untagged)]
    assert "INBOX" in names and "Entw&APw-rfe" in names and "Lists" in names and "Lists.python" not in names
    lists = [u for u in untagged if u.endswith(b" Lists")][0]
    assert b"\\HasChildren" in lists
    junk = [u for u in untagged if u.endswith(b" Junk")][0]
    assert b"\\Junk" in junk
    untagged, _ = w.command('LIST "Lists." %')
    assert sorted(u.split()[-1] for u in untagged) == [b"Lists.python", b"Lists.rust"]
    untagged, _ = w.command('LIST "" inbox')
    assert untagged == [b'* LIST (\\HasNoChildren) "." INBOX']
    untagged, _ = w.command('LIST "" ""')
    assert untagged == [b'* LIST (\\Noselect) "." ""']
    w.command("SUBSCRIBE Lists.rust")
    untagged, _ = w.command('LSUB "" *')
    assert any(u.endswith(b"Lists.rust") for u in untagged)
    assert not any(u.endswith(b"Lists.python") for u in untagged)
    untagged, _ = w.command('LIST (SPECIAL-USE) "" *')
    assert sorted(u.split()[-1] for u in untagged) == [b"Drafts", b"Junk", b"Sent", b"Trash"]
    _, done = w.command("RENAME Lists Feeds")
    assert ok(done)
    untagged, _ = w.command('LIST "" Feeds*')
    assert sorted(u.split()[-1] for u in untagged) == [b"Feeds", b"Feeds.python", b"Feeds.rust"]
    w.close()


def test_nobody_reaches_another_users_mailboxes(srv) -> None:
    w = connect(srv, BOB)
    append(w, "INBOX", msg("bob's secret"))
    w.close()
    w = connect(srv, ALICE)
    for name in ("../bob", "../../example.test/bob", "/etc", "..", "a/b", "~bob", "\"bob@example.test\""):
        _, done = w.command(f'SELECT "{name}"' if not name.startswith('"') else f"SELECT {name}")
        assert b" OK " not in done, name
    untagged, _ = w.command('LIST "" *')
    assert not any(b"bob" in u.lower() for u in untagged)
    w.command("SELECT INBOX")
    untagged, _ = w.command("SEARCH SUBJECT secret")
    assert untagged == [b"* SEARCH"]
    w.close()


def test_literal_and_line_sizes_are_bounded(srv) -> None:
    w = connect(srv)
    w.send(b"big APPEND INBOX {999999999999}\r\n")
    reply = w.read_response()
    assert reply.startswith(b"big BAD") or reply.startswith(b"big NO"), reply
    w.send(b"long NOOP " + b"x" * 200_000 + b"\r\n")
    assert b"BAD" in w.read_response()
    _, done = w.command("NOOP")
    assert ok(done)
    w.close()


def test_search_on_the_server(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "SearchBox")
    append(w, "SearchBox", msg("Quarterly report", "numbers inside\r\n"), "\\Seen", "01-Mar-2020 12:00:00 +0000")
    append(w, "SearchBox", msg("=?UTF-8?Q?Gr=C3=BC=C3=9Fe?=", "Stra=C3=9Fe\r\n",
                              "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n"),
           "$Junk", "05-Mar-2020 12:00:00 +0000")
    w.command("SELECT SearchBox")
    assert w.command("SEARCH SUBJECT quarterly")[0] == [b"* SEARCH 1"]
    assert w.command(b"SEARCH CHARSET UTF-8 BODY {7+}\r\nstra\xc3\x9fe")[0] == [b"* SEARCH 2"]
    assert w.command("SEARCH KEYWORD $Junk")[0] == [b"* SEARCH 2"]
    assert w.command("SEARCH UNSEEN SINCE 2-Mar-2020")[0] == [b"* SEARCH 2"]
    assert w.command("SEARCH OR SEEN KEYWORD $Junk")[0] == [b"* SEARCH 1 2"]
    uids = w.command("UID SEARCH ALL")[0][0].split()[2:]
    assert len(uids) == 2
    w.close()


def test_enable_condstore_namespace_id_unselect(srv) -> None:
    w = connect(srv)
    untagged, _ = w.command("NAMESPACE")
    assert untagged == [b'* NAMESPACE (("" ".")) NIL NIL']
    untagged, _ = w.command('ID ("name" "test")')
    assert untagged[0].startswith(b"* ID (")
    untagged, _ = w.command("ENABLE CONDSTORE")
    assert untagged == [b"* ENABLED CONDSTORE"]
    fresh_folder(w, "ModBox")
    append(w, "ModBox", msg("mod"))
    untagged, _ = w.command("SELECT ModBox")
    assert any(b"HIGHESTMODSEQ" in u for u in untagged)
    untagged, _ = w.command("FETCH 1 (FLAGS MODSEQ)")
    before = fetch_items(untagged[0])["MODSEQ"][0]
    untagged, _ = w.command("STORE 1 +FLAGS (\\Seen)")
    after = fetch_items(untagged[0])["MODSEQ"][0]
    assert after > before
    untagged, done = w.command(f"STORE 1 (UNCHANGEDSINCE {before}) +FLAGS (\\Flagged)")
    assert b"[MODIFIED 1]" in done
    untagged, _ = w.command(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {before})")
    assert len(untagged) == 1
    _, done = w.command("UNSELECT")
    assert ok(done)
    _, done = w.command("FETCH 1 FLAGS")
    assert b" BAD " in done
    w.close()


def test_garbage_never_hurts_the_server(srv) -> None:
    import random
    rnd = random.Random(6)
    w = connect(srv)
    w.command("SELECT INBOX")
    for i in range(200):
        junk = bytes(rnd.choice(b"abcAZ09 ()[]{}<>\"\\*%+-.:,\x00\x7f\xff\t") for _ in range(rnd.randint(0, 60)))
        junk = junk.replace(b"\r", b"").replace(b"\n", b"")
        if b"{" in junk:
            junk = junk.replace(b"{", b"(")  # literals would wait for their bytes
        w.send(b"g%d " % i + junk + b"\r\n")
        reply = w.read_response()
        while not reply.startswith(b"g%d " % i):
            assert not reply.startswith(b"* BYE"), (junk, reply)
            reply = w.read_response()
        if i % 10 == 9:
            _, done = w.command("NOOP")
            assert ok(done)
    w.close()
