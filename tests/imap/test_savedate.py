"""SAVEDATE (RFC 8514) against a real `mailsift serve`: FETCH SAVEDATE of a delivered, appended,
copied and moved message (a COPY or MOVE is a new save; its INTERNALDATE is kept), a STORE
keeps it, the SAVEDBEFORE/SAVEDON/SAVEDSINCE/SAVEDATESUPPORTED search keys, and a mail root
whose index is from before save dates were kept (schema 1): upgraded in place when the server
opens it, its messages answering their INTERNALDATE as save date."""

from __future__ import annotations

import datetime as _dt
import re
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

from imap.conftest import ImapServer
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap.parser import format_datetime, parse_datetime
from mailsift.store import index as idx
from mailsift.store.api import INBOX, Store

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"
OLD = 1_500_000_000.0  # 14-Jul-2017 02:40:00 +0000
OLD_TEXT = format_datetime(_dt.datetime.fromtimestamp(OLD, _dt.timezone.utc))


def msg(subject: str) -> bytes:
    return f"From: a@example.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()


def schema1(mailbox_path: Path) -> None:
    """Make the mailbox's index what the code before save dates wrote (schema 1)."""
    conn = sqlite3.connect(mailbox_path / idx.INDEX_NAME)
    with conn:
        conn.execute("ALTER TABLE messages DROP COLUMN save_date")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema'")
    conn.close()


@pytest.fixture(scope="module")
def srv(mailsift_bin: str) -> Iterator[ImapServer]:
    """A server over a mail root whose index is schema 1: Old holds three messages APPENDed with
    INTERNALDATE OLD, one \\Seen, before the server (and save dates) existed."""
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-savedate-"))
    store = Store(workdir / "mail", hostname="old.host")
    box = store.mailbox(ALICE)
    box.create_folder("Old")
    for i, flags in enumerate(([], ["\\Seen"], [])):
        box.append("Old", msg(f"old {i + 1}"), flags=flags, internal_date=OLD)
    path = box.path
    store.close()
    schema1(path)
    server = ImapServer(mailsift_bin, workdir, {ALICE: ALICE_PW}).start()
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


def connect(srv: ImapServer) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(ALICE, ALICE_PW)
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def fetch(w: Wire, command: str) -> dict[int, dict]:
    """{UID: items} of a UID FETCH."""
    untagged, done = w.command(command)
    assert ok(done), (command, done)
    out = {}
    for u in untagged:
        if b" FETCH " in u:
            items = fetch_items(u)
            out[items["UID"]] = items
    return out


def saved(items: dict) -> float:
    value = items["SAVEDATE"]
    assert isinstance(value, bytes), items  # a quoted date-time, never NIL here
    return parse_datetime(value.decode()).timestamp()


def search(w: Wire, keys: str) -> list[int]:
    untagged, done = w.command(f"UID SEARCH {keys}")
    assert ok(done), (keys, done)
    [line] = [u for u in untagged if u.startswith(b"* SEARCH")]
    return sorted(int(x) for x in line.split()[2:])


def test_capability(srv: ImapServer) -> None:
    w = connect(srv)
    untagged, _ = w.command("CAPABILITY")
    assert "SAVEDATE" in untagged[0].decode().split()
    w.close()


def test_a_delivered_message_is_saved_when_delivered(srv: ImapServer) -> None:
    w = connect(srv)
    t0 = time.time()
    srv.deliver(ALICE, msg("delivered"))
    t1 = time.time()
    assert ok(w.command("SELECT INBOX")[1])
    items = list(fetch(w, "UID FETCH 1:* (SAVEDATE INTERNALDATE)").values())[-1]
    assert int(t0) - 1 <= saved(items) <= t1 + 1
    assert re.fullmatch(rb"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}", items["SAVEDATE"])
    w.close()


def test_old_index_upgraded_and_copy_move_are_new_saves(srv: ImapServer) -> None:
    w = connect(srv)
    assert ok(w.command("SELECT Old")[1])
    old = fetch(w, "UID FETCH 1:* (SAVEDATE INTERNALDATE FLAGS)")
    assert sorted(old) == [1, 2, 3]  # the same UIDs: upgraded, not rebuilt
    for items in old.values():
        assert items["SAVEDATE"] == items["INTERNALDATE"] == OLD_TEXT.encode()
    assert "\\Seen" in old[2]["FLAGS"]
    # a STORE keeps the save date (the session's view replaces the message's entry)
    assert ok(w.command("UID STORE 1 +FLAGS (\\Flagged)")[1])
    assert fetch(w, "UID FETCH 1 (SAVEDATE)")[1]["SAVEDATE"] == OLD_TEXT.encode()
    for name in ("Copied", "Moved"):
        w.command(f"DELETE {name}")
        assert ok(w.command(f"CREATE {name}")[1])
    t0 = time.time()
    assert ok(w.command("UID COPY 1 Copied")[1])
    assert ok(w.command("UID MOVE 2 Moved")[1])
    t1 = time.time()
    for name in ("Copied", "Moved"):
        assert ok(w.command(f"EXAMINE {name}")[1])
        [items] = fetch(w, "UID FETCH 1:* (SAVEDATE INTERNALDATE)").values()
        assert items["INTERNALDATE"] == OLD_TEXT.encode(), name
        assert int(t0) - 1 <= saved(items) <= t1 + 1, (name, items)
    # the copy's source keeps its save date
    assert ok(w.command("EXAMINE Old")[1])
    assert fetch(w, "UID FETCH 1 (SAVEDATE)")[1]["SAVEDATE"] == OLD_TEXT.encode()
    w.close()


def test_search_keys(srv: ImapServer) -> None:
    w = connect(srv)
    w.command("DELETE Mixed")
    assert ok(w.command("CREATE Mixed")[1])
    assert ok(w.command("SELECT Old")[1])
    assert ok(w.command("UID COPY 1:* Mixed")[1])  # saved now, INTERNALDATE 2017
    assert ok(w.command("SELECT Mixed")[1])
    data = f'APPEND Mixed () "{OLD_TEXT}" '.encode() + b"{%d+}\r\n" % len(msg("x")) + msg("x")
    assert ok(w.command(data)[1])
    assert ok(w.command("NOOP")[1])
    uids = sorted(fetch(w, "UID FETCH 1:* (UID)"))
    assert len(uids) >= 2
    today = _dt.datetime.fromtimestamp(saved(fetch(w, f"UID FETCH {uids[0]} (SAVEDATE)")[uids[0]]),
                                       _dt.timezone.utc).date()
    day = f"{today.day}-{today.strftime('%b')}-{today.year}"
    tomorrow = today + _dt.timedelta(days=1)
    nextday = f"{tomorrow.day}-{tomorrow.strftime('%b')}-{tomorrow.year}"
    assert search(w, f"SAVEDON {day}") == uids
    assert search(w, f"SAVEDSINCE {day}") == uids
    assert search(w, f"SAVEDBEFORE {nextday}") == uids
    assert search(w, f"SAVEDBEFORE {day}") == []
    assert search(w, f"SAVEDSINCE {nextday}") == []
    assert search(w, "SAVEDON 14-Jul-2017") == []
    # the INTERNALDATE keys still see 2017
    assert search(w, f"SINCE {day}") == []
    assert search(w, "ON 14-Jul-2017") == uids
    assert search(w, "SAVEDATESUPPORTED") == uids
    assert search(w, "NOT SAVEDATESUPPORTED") == []
    assert search(w, f"OR SAVEDON 14-Jul-2017 SAVEDON {day}") == uids
    # in Old, untouched since the upgrade, the save dates are the 2017 INTERNALDATEs
    assert ok(w.command("EXAMINE Old")[1])
    old = search(w, "ALL")
    assert old and search(w, "SAVEDON 14-Jul-2017") == old
    assert search(w, f"SAVEDBEFORE {day}") == old
    # a bad date is BAD and the session goes on
    _, done = w.command("UID SEARCH SAVEDSINCE 32-Foo-2020")
    assert b" BAD " in done
    _, done = w.command("UID SEARCH SAVEDON")
    assert b" BAD " in done
    assert ok(w.command("NOOP")[1])
    w.close()


def test_savedate_in_esearch_and_with_other_items(srv: ImapServer) -> None:
    w = connect(srv)
    assert ok(w.command("EXAMINE Old")[1])
    untagged, done = w.command("SEARCH RETURN (COUNT) SAVEDON 14-Jul-2017")
    assert ok(done) and untagged[-1].endswith(b" COUNT %d" % len(search(w, "ALL")))
    items = fetch(w, "UID FETCH 1:* (FLAGS SAVEDATE RFC822.SIZE)")
    assert all(set(i) == {"UID", "FLAGS", "SAVEDATE", "RFC822.SIZE"} for i in items.values())
    w.close()


def test_unknown_save_date_units() -> None:
    """Pure parts: the grammar, FETCH's NIL for an unknown save date, and the SAVED* keys
    falling back to the INTERNALDATE then."""
    from mailsift.protocols.imap import fetch as fetchmod, search as searchmod
    from mailsift.protocols.imap.parser import FetchAtt, ParseError, parse_search
    _, key = parse_search([_atom("SAVEDSINCE"), _atom("1-Jan-2020")])
    assert key.op == "SAVEDSINCE" and key.args == (_dt.date(2020, 1, 1),)
    with pytest.raises(ParseError):
        parse_search([_atom("SAVEDON"), _atom("1-Foo-2020")])
    atts = [FetchAtt("SAVEDATE")]
    known = fetchmod.MessageData(1, frozenset(), OLD, 10, save_date=OLD + 86400)
    assert fetchmod.fetch_items(known, atts) == b'(SAVEDATE "15-Jul-2017 02:40:00 +0000")'
    unknown = fetchmod.MessageData(1, frozenset(), OLD, 10)
    assert fetchmod.fetch_items(unknown, atts) == b"(SAVEDATE NIL)"
    view = searchmod.MessageView(1, 1, frozenset(), searchmod.from_epoch(OLD))
    _, on = parse_search([_atom("SAVEDON"), _atom("14-Jul-2017")])
    assert searchmod.matches(on, view, 1, 1)
    view.savedate = searchmod.from_epoch(OLD + 86400)
    assert not searchmod.matches(on, view, 1, 1)


def _atom(text: str):
    from mailsift.protocols.imap.parser import Atom
    return Atom(text)
