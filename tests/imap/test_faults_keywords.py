"""Issue 14, found in review: one message accepted 11,000 keywords (only the 64 KB line bound
held a STORE back) and SELECT's FLAGS response grew to 68 KB. A folder now holds at most
MAX_KEYWORDS distinct keywords: a STORE, APPEND, COPY or MOVE that would add more answers
`NO [LIMIT]` and changes nothing; keywords the folder holds already stay usable."""

from __future__ import annotations

import re

import pytest

from imap.test_caches import append, msg, ok
from imap.wire import Wire, fetch_items
from mailsift.store.listing import MAX_KEYWORDS, too_many_keywords

USER, PW = "vera@example.test", "vera-pw"


def test_the_bound_counts_only_new_keywords() -> None:
    full = {f"k{i}" for i in range(MAX_KEYWORDS)}
    assert not too_many_keywords(full, ["k1", "\\Seen"])
    assert too_many_keywords(full, ["new"])
    assert not too_many_keywords(set(list(full)[:-1]), ["new", "\\Deleted"])
    assert not too_many_keywords(full | {"over"}, ["over"])  # over already: what is there stays


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imapkw-")


def select_flags(w: Wire, folder: str) -> list[str]:
    untagged, done = w.command(f"SELECT {folder}")
    assert ok(done), done
    line = next(u for u in untagged if u.startswith(b"* FLAGS"))
    return re.search(rb"\((.*)\)", line).group(1).decode().split()


def test_keywords_per_folder_are_capped(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    append(w, "INBOX", msg("one"))
    append(w, "INBOX", msg("two"))
    w.command("SELECT INBOX")
    half = MAX_KEYWORDS // 2
    _, done = w.command("STORE 1 +FLAGS (%s)" % " ".join(f"kw{i}" for i in range(half)))
    assert ok(done), done
    _, done = w.command("STORE 2 +FLAGS.SILENT (%s)" % " ".join(f"kw{i}" for i in range(half, MAX_KEYWORDS)))
    assert ok(done), done
    # full: one more is refused, on any message, whatever the mode; nothing changes
    for command in ("STORE 1 +FLAGS (kw0 extra)", "STORE 2 FLAGS (extra)", "UID STORE 1:* +FLAGS.SILENT (extra)"):
        _, done = w.command(command)
        assert b" NO [LIMIT] " in done, (command, done)
    untagged, _ = w.command("FETCH 1:2 (FLAGS)")
    assert not any(b"extra" in u for u in untagged), untagged
    # keywords the folder holds stay usable; removing is always allowed
    _, done = w.command("STORE 2 +FLAGS (kw0 \\Seen)")
    assert ok(done), done
    _, done = w.command("STORE 1 -FLAGS (kw1)")  # the folder's last kw1: 255 left
    assert ok(done), done
    _, done = w.command("STORE 2 +FLAGS (kw1)")
    assert ok(done), done
    # APPEND with a new keyword is refused, with one the folder has it works
    data = msg("three")
    _, done = w.command(b"APPEND INBOX (fresh) {%d+}\r\n" % len(data) + data)
    assert b" NO [LIMIT] " in done, done
    _, done = w.command(b"APPEND INBOX (kw3 \\Flagged) {%d+}\r\n" % len(data) + data)
    assert ok(done), done
    flags = select_flags(w, "INBOX")
    assert len([f for f in flags if f.startswith("kw")]) == MAX_KEYWORDS and "extra" not in flags
    # COPY and MOVE bring keywords too
    _, done = w.command("CREATE Other")
    assert ok(done)
    append(w, "Other", msg("four"), "brandnew")
    w.command("SELECT Other")
    for command in ("COPY 1 INBOX", "MOVE 1 INBOX"):
        _, done = w.command(command)
        assert b" NO [LIMIT] " in done, (command, done)
    untagged, done = w.command("FETCH 1 (FLAGS)")
    assert ok(done) and "brandnew" in fetch_items(untagged[0])["FLAGS"]  # still there: nothing moved
    _, done = w.command("STORE 1 FLAGS (kw5)")
    assert ok(done)
    _, done = w.command("MOVE 1 INBOX")
    assert ok(done), done
    w.close()
