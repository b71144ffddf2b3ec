"""Issue 6, RFC 3501 commands whose transcripts no other test asserted: CLOSE (expunges silently,
not after EXAMINE), UNSUBSCRIBE and LSUB of a vanished folder, LIST (SUBSCRIBED) and RETURN
(SUBSCRIBED), RENAME INBOX, DELETE of a folder with children (then of its \\Noselect name) / of
INBOX / of a folder another session has selected, partial FETCH `<start.len>`, STATUS of the
selected folder."""

from __future__ import annotations

import re

import pytest

from imap.test_caches import append, fresh_folder, msg, ok
from imap.wire import Wire, fetch_items

pytestmark = pytest.mark.integration

JUNO, PW = "juno@example.test", "juno-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {JUNO: PW}, prefix="mailsift-imapcmds-")


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(JUNO, PW)
    return w


def status(w: Wire, folder: str, items: str = "MESSAGES") -> bytes:
    untagged, done = w.command(f"STATUS {folder} ({items})")
    assert ok(done), done
    return untagged[0]


def test_close_expunges_silently_but_not_after_examine(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Closing")
    for i in range(3):
        append(w, "Closing", msg(f"c{i}"))
    w.command("EXAMINE Closing")
    _, done = w.command("STORE 1 +FLAGS (\\Deleted)")
    assert b"NO [READ-ONLY]" in done
    w.command("SELECT Closing")
    w.command("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    w.command("EXAMINE Closing")
    untagged, done = w.command("CLOSE")                 # read-only: nothing expunged
    assert ok(done) and untagged == []
    assert status(w, "Closing").endswith(b"(MESSAGES 3)")
    w.command("SELECT Closing")
    untagged, done = w.command("CLOSE")
    assert ok(done) and untagged == []                  # no EXPUNGE responses for CLOSE
    assert status(w, "Closing").endswith(b"(MESSAGES 1)")
    _, done = w.command("FETCH 1 FLAGS")                # back in the authenticated state
    assert b" BAD " in done
    w.close()


def test_unsubscribe_lsub_and_list_subscribed(srv) -> None:
    w = connect(srv)
    for name in ("Subs", "Subs.kept", "Subs.dropped"):
        w.command(f"CREATE {name}")
        w.command(f"SUBSCRIBE {name}")
    _, done = w.command("UNSUBSCRIBE Subs.dropped")
    assert ok(done)
    untagged, _ = w.command('LSUB "" Subs*')
    assert sorted(u.split()[-1] for u in untagged) == [b"Subs", b"Subs.kept"]
    untagged, _ = w.command('LIST (SUBSCRIBED) "" Subs*')
    assert sorted(u.split()[-1] for u in untagged) == [b"Subs", b"Subs.kept"]
    assert all(b"\\Subscribed" in u for u in untagged)
    untagged, _ = w.command('LIST "" Subs* RETURN (SUBSCRIBED)')
    marks = {u.split()[-1]: b"\\Subscribed" in u for u in untagged}
    assert marks == {b"Subs": True, b"Subs.kept": True, b"Subs.dropped": False}
    # a subscribed folder that is deleted stays in LSUB, as \Noselect
    _, done = w.command("DELETE Subs.kept")
    assert ok(done)
    untagged, _ = w.command('LSUB "" Subs.*')
    assert untagged == [b'* LSUB (\\Noselect) "." Subs.kept']
    w.command("UNSUBSCRIBE Subs.kept")
    untagged, _ = w.command('LSUB "" Subs.*')
    assert untagged == []
    w.close()


def test_rename_inbox_moves_its_messages_and_leaves_it_empty(srv) -> None:
    w = connect(srv)
    for i in range(2):
        srv.deliver(JUNO, msg(f"inbox {i}"))
    before = int(re.search(rb"MESSAGES (\d+)", status(w, "INBOX")).group(1))
    assert before >= 2
    uv = re.search(rb"UIDVALIDITY (\d+)", status(w, "INBOX", "UIDVALIDITY UIDNEXT")).group(1)
    w.command("DELETE OldInbox")
    _, done = w.command("RENAME INBOX OldInbox")
    assert ok(done), done
    assert status(w, "INBOX").endswith(b"(MESSAGES 0)")
    assert status(w, "OldInbox").endswith(b"(MESSAGES %d)" % before)
    assert re.search(rb"UIDVALIDITY (\d+)", status(w, "INBOX", "UIDVALIDITY")).group(1) == uv
    srv.deliver(JUNO, msg("after rename"))  # INBOX still takes mail
    assert status(w, "INBOX").endswith(b"(MESSAGES 1)")
    w.close()


def test_delete_refusals_and_a_selected_folder_deleted_by_another_session(srv) -> None:
    a, b = connect(srv), connect(srv)
    for name in ("Parent", "Parent.child", "Doomed"):
        a.command(f"CREATE {name}")
    _, done = a.command("DELETE Parent")
    assert ok(done), done                                # a folder with children: deleted (RFC 3501 6.3.4)
    _, done = a.command("DELETE Parent")
    assert b" NO " in done                               # now \Noselect with children
    _, done = a.command("DELETE INBOX")
    assert b" NO " in done
    append(a, "Doomed", msg("doomed"))
    b.command("SELECT Doomed")
    _, done = a.command("DELETE Doomed")
    assert ok(done)
    untagged, done = b.command("NOOP")
    # the session whose folder vanished is told and let go (as Dovecot does), not left
    # addressing messages that are gone
    assert untagged and untagged[0].startswith(b"* BYE"), (untagged, done)
    with pytest.raises((ConnectionError, OSError)):
        b.command("FETCH 1 BODY[]")
    a.close()
    b.close()


def test_partial_fetch_and_status_of_the_selected_folder(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Partial")
    data = msg("partial", "0123456789abcdefghij\r\n")
    append(w, "Partial", data)
    w.command("SELECT Partial")
    untagged, _ = w.command("FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.6> BODY.PEEK[TEXT]<100.5>)")
    items = fetch_items(untagged[0])
    assert items["BODY[]<0>"] == data[:10]
    assert items["BODY[TEXT]<5>"] == b"56789a"
    assert items["BODY[TEXT]<100>"] == b""  # beyond the end: empty
    untagged, _ = w.command("FETCH 1 (FLAGS)")
    assert "\\Seen" not in fetch_items(untagged[0])["FLAGS"]
    untagged, _ = w.command("FETCH 1 (BODY[TEXT]<0.4>)")  # not PEEK: sets \Seen
    items = fetch_items(untagged[0])
    assert items["BODY[TEXT]<0>"] == b"0123" and "\\Seen" in items["FLAGS"]
    assert status(w, "Partial", "MESSAGES UNSEEN").endswith(b"(MESSAGES 1 UNSEEN 0)")
    w.close()
