"""Issue 6, keywords kept (`$Junk`, `$NonJunk`, `Junk`, `NonJunk` and any other) and UIDVALIDITY
stable: through APPEND, STORE, COPY, MOVE, mutt renaming the file (system flags change, keywords
stay), logging out and in, and a restart of `mailsift serve`; FLAGS and PERMANENTFLAGS announce
the keywords in use; SEARCH KEYWORD/UNKEYWORD finds them."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from imap.test_caches import append, fresh_folder, msg, ok
from imap.wire import Wire, fetch_items

pytestmark = pytest.mark.integration

IVY, PW = "ivy@example.test", "ivy-pw"
KEYWORDS = {"$Junk", "$NonJunk", "Junk", "NonJunk", "$Forwarded", "$Label1", "Work_Item-7", "Projekt.X"}


@pytest.fixture
def srv(imap_server):
    return imap_server(users={IVY: PW})


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(IVY, PW)
    return w


def flags(w: Wire) -> dict[int, set[str]]:
    untagged, done = w.command("UID FETCH 1:* (FLAGS)")
    assert ok(done), done
    return {fetch_items(u)["UID"]: set(fetch_items(u)["FLAGS"]) - {"\\Recent"} for u in untagged if b" FETCH " in u}


def select(w: Wire, folder: str) -> tuple[int, bytes]:
    untagged, done = w.command(f"SELECT {folder}")
    assert ok(done), done
    text = b"\n".join(untagged)
    return int(re.search(rb"UIDVALIDITY (\d+)", text).group(1)), text


def test_keywords_and_uidvalidity_survive_copy_move_mutt_relogin_and_restart(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Kw")
    fresh_folder(w, "KwDest")
    u1 = append(w, "Kw", msg("one"), "$Junk Junk \\Flagged")
    u2 = append(w, "Kw", msg("two"), "$NonJunk NonJunk")
    u3 = append(w, "Kw", msg("three"))
    uv, text = select(w, "Kw")
    _, done = w.command(f"UID STORE {u3} +FLAGS ($Forwarded $Label1 Work_Item-7 Projekt.X \\Seen)")
    assert ok(done)
    want = {u1: {"$Junk", "Junk", "\\Flagged"}, u2: {"$NonJunk", "NonJunk"},
            u3: {"$Forwarded", "$Label1", "Work_Item-7", "Projekt.X", "\\Seen"}}
    assert flags(w) == want
    # SEARCH by keyword
    untagged, _ = w.command("UID SEARCH KEYWORD Work_Item-7")
    assert untagged == [b"* SEARCH %d" % u3]
    untagged, _ = w.command("UID SEARCH UNKEYWORD $Junk KEYWORD Junk")
    assert untagged == [b"* SEARCH"]
    untagged, _ = w.command("UID SEARCH OR KEYWORD $NonJunk KEYWORD $Label1")
    assert untagged == [b"* SEARCH %d %d" % (u2, u3)]
    # a fresh SELECT announces every keyword in use, and lets clients make new ones
    w.command("UNSELECT")
    uv_again, text = select(w, "Kw")
    assert uv_again == uv
    flags_line = re.search(rb"\* FLAGS \(([^)]*)\)", text).group(1).decode().split()
    assert KEYWORDS <= set(flags_line)
    perm = re.search(rb"PERMANENTFLAGS \(([^)]*)\)", text).group(1).decode().split()
    assert KEYWORDS <= set(perm) and "\\*" in perm
    # COPY and MOVE keep them
    _, done = w.command(f"UID COPY {u1} KwDest")
    assert ok(done)
    _, done = w.command(f"UID MOVE {u3} KwDest")
    assert ok(done)
    dest_uv = select(w, "KwDest")[0]
    assert sorted(map(frozenset, flags(w).values()), key=sorted) == \
        sorted([frozenset(want[u1]), frozenset(want[u3])], key=sorted)
    w.close()
    # mutt marks the moved message unseen and replied (renames its file): keywords stay
    d = srv.mail_root / "example.test" / "ivy" / ".KwDest" / "cur"
    [f3] = [n for n in os.listdir(d) if b"Subject: three" in (d / n).read_bytes()]
    key, letters = f3.split(":2,")
    os.rename(d / f3, d / (key + ":2," + "".join(sorted(set(letters) - {"S"} | {"R"}))))
    w = connect(srv)
    select(w, "KwDest")
    after_mutt = [f for f in flags(w).values() if "$Label1" in f]
    assert after_mutt == [{"$Forwarded", "$Label1", "Work_Item-7", "Projekt.X", "\\Answered"}], after_mutt
    dest_flags = flags(w)
    w.close()
    # a restart of the server: same UIDVALIDITY, same UIDs, same flags and keywords
    srv.stop()
    srv.start()
    w = connect(srv)
    assert select(w, "Kw")[0] == uv
    assert flags(w) == {u1: want[u1], u2: want[u2]}
    assert select(w, "KwDest")[0] == dest_uv
    assert flags(w) == dest_flags
    # removing keywords sticks too
    _, done = w.command("UID STORE 1:* -FLAGS ($Junk Junk $Label1)")
    assert ok(done)
    w.close()
    w = connect(srv)
    select(w, "KwDest")
    assert not any(f & {"$Junk", "Junk", "$Label1"} for f in flags(w).values())
    w.close()


def test_keywords_are_refused_only_when_malformed(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "KwBad")
    uid = append(w, "KwBad", msg("x"))
    select(w, "KwBad")
    for bad in ("(\\NotAFlag)", "(a(b)", "(\"quoted\")", "(kw{3})"):
        _, done = w.command(f"UID STORE {uid} +FLAGS {bad}")
        assert not ok(done), (bad, done)
    assert flags(w) == {uid: set()}  # nothing half-applied
    _, done = w.command(f"UID STORE {uid} +FLAGS (Ünïcode)".encode())
    assert not ok(done) or flags(w)[uid] == {"Ünïcode"}
    w.close()
