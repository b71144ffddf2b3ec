"""Issue 6, several sessions on one mailbox: no EXPUNGE during FETCH, STORE or SEARCH but at NOOP,
CHECK and during IDLE (and with UID commands); IDLE reports other sessions' flag changes and
expunges at once; after expunges the sessions agree on sequence numbers; \\Recent is seen by
exactly one session, also for mail arriving while several sessions have the folder selected.
Through a real `mailsift serve` (IMAP + LMTP on loopback)."""

from __future__ import annotations

import re
import time

import pytest

from imap.test_caches import append, fresh_folder, msg, ok, subjects
from imap.wire import Wire, fetch_items

pytestmark = pytest.mark.integration

DAVE, PW = "dave@example.test", "dave-pw"


@pytest.fixture(scope="module", params=[2, 0], ids=["imap_workers=2", "imap_workers=0"])
def srv(mailsift_bin, request):
    """Both ways `mailsift serve` answers IMAP: in two worker processes (each with its own
    caches; connections spread over them by the kernel) and in the main process."""
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {DAVE: PW}, {"imap_workers": request.param}, prefix="mailsift-imapedge-")


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(DAVE, PW)
    return w


def uids_by_seq(w: Wire) -> list[int]:
    untagged, done = w.command("FETCH 1:* (UID)")
    assert ok(done), done
    by_seq = {int(u.split()[1]): fetch_items(u)["UID"] for u in untagged if b" FETCH " in u}
    return [by_seq[k] for k in sorted(by_seq)]  # (unsolicited FLAGS updates may come too)


def expunge_in(w: Wire, uids: list[int]) -> None:
    _, done = w.command("UID STORE %s +FLAGS.SILENT (\\Deleted)" % ",".join(map(str, uids)))
    assert ok(done)
    _, done = w.command("UID EXPUNGE %s" % ",".join(map(str, uids)))
    assert ok(done)


def idle_until(w: Wire, want: bytes, within: float) -> tuple[list[bytes], float]:
    """Lines the server sends during IDLE until one contains `want`; and how long it took."""
    start = time.monotonic()
    lines = []
    while True:
        line = w.read_line()
        lines.append(line)
        if want in line:
            return lines, time.monotonic() - start
        assert time.monotonic() - start < within, lines


def idle_done(w: Wire, tag: bytes) -> list[bytes]:
    w.send(b"DONE\r\n")
    rest = []
    while True:
        line = w.read_response()
        rest.append(line)
        if line.startswith(tag + b" "):
            assert ok(line), line
            return rest


def test_no_expunge_during_store_and_search_but_at_noop(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "NoExp")
    uids = [append(a, "NoExp", msg(f"n{i}")) for i in range(5)]
    a.command("SELECT NoExp")
    b.command("SELECT NoExp")
    expunge_in(b, [uids[1], uids[3]])
    # STORE by sequence number: no EXPUNGE, sequence numbers as before (5 is still the 5th)
    untagged, done = a.command("STORE 5 +FLAGS (\\Flagged)")
    assert ok(done) and not any(b"EXPUNGE" in u for u in untagged), untagged
    assert any(u.startswith(b"* 5 FETCH") and b"\\Flagged" in u for u in untagged), untagged
    # SEARCH: no EXPUNGE, the old numbering, the expunged messages do not match
    untagged, done = a.command("SEARCH ALL")
    assert ok(done) and untagged == [b"* SEARCH 1 3 5"], untagged
    untagged, _ = a.command("SEARCH FLAGGED")
    assert untagged == [b"* SEARCH 5"]
    # NOOP reports both, in an order that keeps each number right when it is read
    untagged, done = a.command("NOOP")
    assert [u for u in untagged if u.endswith(b"EXPUNGE")] == [b"* 2 EXPUNGE", b"* 3 EXPUNGE"], untagged
    untagged, _ = a.command("SEARCH FLAGGED")
    assert untagged == [b"* SEARCH 3"]
    assert uids_by_seq(a) == uids_by_seq(b) == [uids[0], uids[2], uids[4]]
    a.close()
    b.close()


def heard(w: Wire, seq: int) -> None:
    """Wait until w's session knows message `seq` was expunged elsewhere (its FETCH says so),
    without making it report the EXPUNGE (FETCH never does)."""
    from harness.procs import wait_for
    wait_for(lambda: b"EXPUNGEISSUED" in w.command(f"FETCH {seq} (BODY.PEEK[HEADER])")[1], 10,
             what="the expunge event")


def test_uid_commands_and_check_may_report_expunges(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "UidExp")
    uids = [append(a, "UidExp", msg(f"u{i}")) for i in range(4)]
    a.command("SELECT UidExp")
    b.command("SELECT UidExp")
    expunge_in(b, [uids[0]])
    heard(a, 1)  # b may be served by another worker process: its news takes a moment
    untagged, done = a.command("UID SEARCH ALL")
    assert ok(done) and untagged[0] == b"* 1 EXPUNGE" and untagged[-1] == b"* SEARCH %d %d %d" % tuple(uids[1:])
    expunge_in(b, [uids[3]])
    heard(a, 3)
    untagged, done = a.command("CHECK")
    assert ok(done) and untagged == [b"* 3 EXPUNGE"]
    assert uids_by_seq(a) == uids[1:3]
    a.close()
    b.close()


def test_idle_reports_flags_expunges_and_appends_of_another_session_at_once(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "IdleBox")
    uids = [append(a, "IdleBox", msg(f"i{i}")) for i in range(3)]
    a.command("SELECT IdleBox")
    b.command("SELECT IdleBox")
    a.send(b"idle1 IDLE\r\n")
    assert a.read_line().startswith(b"+ ")
    b.command(f"UID STORE {uids[2]} +FLAGS (\\Seen $NonJunk)")
    lines, took = idle_until(a, b"FETCH", 1.0)
    assert re.match(rb"\* 3 FETCH \(.*FLAGS \(.*\\Seen", lines[-1]) and b"$NonJunk" in lines[-1]
    expunge_in(b, [uids[0]])
    lines, took = idle_until(a, b"EXPUNGE", 1.0)
    assert lines[-1] == b"* 1 EXPUNGE"
    new = append(b, "IdleBox", msg("i-new"))
    lines, took = idle_until(a, b"EXISTS", 1.0)
    assert lines[-1] == b"* 3 EXISTS"
    rest = idle_done(a, b"idle1")
    assert not any(b"EXPUNGE" in r or b"EXISTS" in r for r in rest)  # nothing reported twice
    assert uids_by_seq(a) == [uids[1], uids[2], new]
    a.close()
    b.close()


def test_recent_of_new_mail_is_seen_by_exactly_one_of_the_selected_sessions(srv) -> None:
    sessions = [connect(srv) for _ in range(3)]
    for w in sessions:
        w.command("SELECT INBOX")
    examine = connect(srv)
    examine.command("EXAMINE INBOX")
    untagged, _ = examine.command("STATUS INBOX (MESSAGES)")
    n = int(re.search(rb"MESSAGES (\d+)", untagged[0]).group(1))
    srv.deliver(DAVE, msg("recent one"))
    srv.deliver(DAVE, msg("recent two"))
    recent_counts = []
    for w in sessions + [examine]:
        untagged, _ = w.command("NOOP")
        assert b"* %d EXISTS" % (n + 2) in untagged, untagged
        untagged, _ = w.command(f"FETCH {n + 1}:{n + 2} (FLAGS)")
        recent_counts.append(sum(b"\\Recent" in u for u in untagged))
    # one read-write session has both as \Recent, the others and the read-only one none;
    # an EXAMINE never takes them away, so it sees them as recent too
    assert sorted(recent_counts[:3]) == [0, 0, 2], recent_counts
    assert recent_counts[3] in (0, 2)
    other = connect(srv)
    untagged, _ = other.command("STATUS INBOX (RECENT MESSAGES)")
    assert untagged[0].endswith(b"(RECENT 0 MESSAGES %d)" % (n + 2))
    untagged, _ = other.command("SELECT INBOX")
    assert b"* 0 RECENT" in untagged
    for w in sessions + [examine, other]:
        w.close()


def test_recent_is_claimed_once_when_sessions_select_at_the_same_time(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "RecentRace")
    for i in range(4):
        append(w, "RecentRace", msg(f"rr{i}"))
    w.close()
    sessions = [connect(srv) for _ in range(6)]
    for k, s in enumerate(sessions):  # all SELECTs on the wire before any answer is read
        s.send(b"sel%d SELECT RecentRace\r\n" % k)
    counts = []
    for k, s in enumerate(sessions):
        lines = []
        while True:
            line = s.read_response()
            lines.append(line)
            if line.startswith(b"sel%d " % k):
                assert ok(line), line
                break
        counts.append(int(re.search(rb"\* (\d+) RECENT", b"\n".join(lines)).group(1)))
    assert sorted(counts) == [0, 0, 0, 0, 0, 4], counts
    for s in sessions:
        s.close()


@pytest.mark.parametrize("command", ["COPY", "MOVE"])
def test_copy_and_move_by_sequence_number_take_the_message_the_client_named(srv, command: str) -> None:
    """Another session expunged message 2; this session has heard of it but was not yet sent the
    EXPUNGE. `COPY 3`/`MOVE 3` mean the message the client knows as 3 ("message 3"): the pending
    EXPUNGE waits until after the command (a MOVE into Junk is learnt as spam: the wrong message
    would be learnt otherwise)."""
    a, b = connect(srv), connect(srv)
    src, dst = f"Seq{command}Src", f"Seq{command}Dst"
    for name in (src, dst):
        fresh_folder(b, name)
    for i in range(1, 6):
        append(b, src, msg(f"message {i}"))
    a.command(f"SELECT {src}")
    b.command(f"SELECT {src}")
    b.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b"* 2 EXPUNGE" in b.command("EXPUNGE")[0]
    heard(a, 2)
    assert subjects(a, "3") == {3: "message 3"}
    untagged, done = a.command(f"{command} 3 {dst}")
    assert ok(done), done
    b.command(f"EXAMINE {dst}")
    got = list(subjects(b).values())
    a.close()
    b.close()
    assert got == ["message 3"], (got, untagged)
    if command == "MOVE":  # MOVE sends the held-back EXPUNGE of message 2 after its own numbers
        assert any(u.startswith(b"* 2 EXPUNGE") for u in untagged), untagged
