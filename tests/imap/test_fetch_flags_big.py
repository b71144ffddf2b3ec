"""FETCH (FLAGS) of a folder bigger than one chunk of the fast path (session.fetch_flags_fast,
FLAGS_CHUNK lines at a time): every message answered once, in order, with the flags it holds
(system flags, keywords, \\Recent for this session only), the same as the general FETCH path
answers, by UID and by sequence set of several spans; the listing a fresh server reads from
the index (no listing cached) agrees too; messages expunged elsewhere are still answered, with
OK [EXPUNGEISSUED]."""

from __future__ import annotations

import re

import pytest

from imap.wire import Wire, fetch_items
from mailsift.protocols.imap.session import FLAGS_CHUNK

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"
N = 2 * FLAGS_CHUNK + 300
FLAG_CYCLE = ("", "\\Seen", "\\Seen \\Flagged", "$Work", "\\Answered $Work $Later", "\\Deleted", "\\Draft \\Seen")


@pytest.fixture(scope="module")
def srv(mailsift_bin, tmp_path_factory):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {ALICE: ALICE_PW}, prefix="mailsift-imap-flagsbig-")


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port, timeout=120.0)
    w.login(ALICE, ALICE_PW)
    return w


def fill(w: Wire, folder: str, first: int, count: int) -> None:
    """MULTIAPPEND messages first..first+count-1 with FLAG_CYCLE's flags, 500 a command."""
    for start in range(first, first + count, 500):
        parts = []
        for i in range(start, min(start + 500, first + count)):
            data = f"From: a@example.test\r\nSubject: m{i}\r\n\r\nbody {i}\r\n".encode()
            parts.append(f"({FLAG_CYCLE[i % len(FLAG_CYCLE)]}) ".encode() + b"{%d+}\r\n" % len(data) + data)
        _, done = w.command(f"APPEND {folder} ".encode() + b" ".join(parts))
        assert b" OK" in done, done


def flags_by_seq(untagged: list[bytes]) -> list[tuple[int, int, list[str]]]:
    out = []
    for line in untagged:
        if b" FETCH " not in line:
            continue
        seq = int(re.match(rb"\* (\d+) FETCH", line).group(1))
        items = fetch_items(line)
        out.append((seq, items.get("UID"), items["FLAGS"]))
    return out


def expected(i: int, recent: bool) -> set[str]:
    flags = set(FLAG_CYCLE[i % len(FLAG_CYCLE)].split())
    return flags | {"\\Recent"} if recent else flags


def test_fetch_flags_of_a_folder_over_several_chunks(srv) -> None:
    w = connect(srv)
    w.command("CREATE Big")
    fill(w, "Big", 1, N)
    first, _ = w.command("SELECT Big")  # claims \Recent for 1..N
    assert b"* %d EXISTS" % N in first
    w.command("UNSELECT")
    fill(w, "Big", N + 1, 5)  # \Recent to the next session that selects
    other = connect(srv)
    untagged, _ = other.command("SELECT Big")
    assert b"* 5 RECENT" in untagged
    total = N + 5

    fast, done = other.command("UID FETCH 1:* (FLAGS)")
    assert b" OK" in done
    general, _ = other.command("UID FETCH 1:* (FLAGS RFC822.SIZE)")  # not the fast path
    got = flags_by_seq(fast)
    assert [(s, u) for s, u, _f in got] == [(i, i) for i in range(1, total + 1)]
    assert got == flags_by_seq(general)
    for seq, uid, flags in got:
        assert set(flags) == expected(uid, uid > N), (seq, flags)

    spans = f"2,7:{FLAGS_CHUNK + 3},{2 * FLAGS_CHUNK - 1}:{total - 2},{total}"
    by_seq, _ = other.command(f"FETCH {spans} (FLAGS)")
    general, _ = other.command(f"FETCH {spans} (UID FLAGS RFC822.SIZE)")
    got = flags_by_seq(by_seq)
    assert [(s, f) for s, _u, f in got] == [(s, f) for s, _u, f in flags_by_seq(general)]
    assert [s for s, _u, _f in got] == [2, *range(7, FLAGS_CHUNK + 4),
                                       *range(2 * FLAGS_CHUNK - 1, total - 1), total]
    w.close()
    other.close()

    # a fresh server process has no listing in memory: SELECT reads every row from the index
    assert "Traceback" not in srv.log()
    srv.stop()
    srv.start()
    again = connect(srv)
    untagged, _ = again.command("EXAMINE Big")
    assert b"* %d EXISTS" % total in untagged and b"* 0 RECENT" in untagged
    fresh = flags_by_seq(again.command("UID FETCH 1:* (FLAGS)")[0])
    assert [(s, u) for s, u, _f in fresh] == [(i, i) for i in range(1, total + 1)]
    for _seq, uid, flags in fresh:
        assert set(flags) == expected(uid, False)
    sizes = {fetch_items(line)["UID"]: fetch_items(line)["RFC822.SIZE"]
             for line in again.command("UID FETCH 1:* (RFC822.SIZE)")[0] if b" FETCH " in line}
    assert sizes == {i: len(f"From: a@example.test\r\nSubject: m{i}\r\n\r\nbody {i}\r\n") for i in range(1, total + 1)}

    # messages another session expunged that this one has not been told of: still answered
    # from the view, OK [EXPUNGEISSUED]; their EXPUNGEs come at the next NOOP
    gone = [i for i in range(1, total + 1) if "\\Deleted" in expected(i, False)]
    writer = connect(srv)
    writer.command("SELECT Big")
    _, done = writer.command("EXPUNGE")
    assert b" OK" in done
    untagged, done = again.command("FETCH 1:* (UID FLAGS)")  # (a UID FETCH may be told of expunges first)
    assert b"OK [EXPUNGEISSUED]" in done, done
    assert [u for _s, u, _f in flags_by_seq(untagged)] == list(range(1, total + 1))
    untagged, _ = again.command("NOOP")
    assert sum(line.endswith(b" EXPUNGE") for line in untagged) == len(gone)
    left, done = again.command("UID FETCH 1:* (FLAGS)")
    assert b"EXPUNGEISSUED" not in done
    assert [u for _s, u, _f in flags_by_seq(left)] == [i for i in range(1, total + 1) if i not in gone]
    writer.close()
    again.close()
