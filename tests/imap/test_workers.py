"""IMAP in several worker processes (`[store] imap_workers`): two sessions of one user forced
into different processes still behave as one server: \\Recent seen by exactly one session,
each other's flag changes, appends and expunges reported with the right untagged responses
(no EXPUNGE during FETCH/STORE/SEARCH), IDLE told of an LMTP delivery made in the main process
and of an APPEND made in the other worker within a second, the per-user cap counted across
workers, and the feedback learner (main process) seeing each Junk move exactly once.

Which process serves a connection is read from /proc: the server-side socket of the
connection (/proc/net/tcp) is an open file of exactly one worker."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.procs import child_pids, wait_for

from imap.conftest import ImapServer
from imap.wire import Wire

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"


def msg(subject: str) -> bytes:
    return (f"From: a@example.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\nbody of {subject}\r\n").encode()


def worker_pids(srv: ImapServer) -> list[int]:
    assert srv.daemon is not None
    return child_pids(srv.daemon.pid)


def serving_pid(srv: ImapServer, w: Wire) -> int:
    """The process holding the server side of this connection."""
    client_port = w.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local_port = int(f[1].split(":")[1], 16)
        remote_port = int(f[2].split(":")[1], 16)
        if local_port == srv.imap_port and remote_port == client_port:
            inode = f[9]
    assert inode is not None, "server side of the connection not found"
    target = f"socket:[{inode}]"
    for pid in worker_pids(srv):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                pass
    raise AssertionError("no worker holds the connection")


def pair_in_two_workers(srv: ImapServer, login: bool = True) -> tuple[Wire, Wire]:
    """Two connections served by different worker processes (others opened on the way are closed)."""
    by_pid: dict[int, Wire] = {}
    extra: list[Wire] = []
    for _ in range(60):
        w = Wire(srv.host, srv.imap_port)
        assert w.greeting.startswith(b"* OK")
        pid = serving_pid(srv, w)
        if pid in by_pid:
            extra.append(w)
        else:
            by_pid[pid] = w
        if len(by_pid) == 2:
            break
    closed_before = srv.log().count("a connection closed")
    for w in extra:
        w.close()
    # the main process counts a worker's connections until the worker reports them closed:
    # wait for that, so the next connections are dealt by the counts the test expects
    wait_for(lambda: srv.log().count("a connection closed") >= closed_before + len(extra), 10,
             what="the closed extra connections to be counted")
    assert len(by_pid) == 2, "every connection went to the same worker"
    a, b = by_pid.values()
    if login:
        a.login(ALICE, ALICE_PW)
        b.login(ALICE, ALICE_PW)
    return a, b


@pytest.fixture
def srv(mailsift_bin: str) -> Iterator[ImapServer]:
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-workers-"))
    server = ImapServer(mailsift_bin, workdir, {ALICE: ALICE_PW},
                        {"imap_workers": 2, "imap_max_per_user": 3})
    with open(server.config, "a") as fh:
        fh.write("[feedback]\nsave_interval = 0.5\n")
    server.start()
    wait_for(lambda: len(worker_pids(server)) == 2, 20, what="two imap workers")
    yield server
    pids = worker_pids(server)
    server.stop()
    for pid in pids:  # the workers go with the main process
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


def joined(lines: list[bytes]) -> bytes:
    return b"\n".join(lines)


def untagged_matching(lines: list[bytes], pattern: bytes) -> list[bytes]:
    return [u for u in lines if re.search(pattern, u)]


def test_recent_is_claimed_once_across_processes(srv: ImapServer) -> None:
    for i in range(3):
        srv.deliver(ALICE, msg(f"r{i}"))
    a, b = pair_in_two_workers(srv)
    assert serving_pid(srv, a) != serving_pid(srv, b)
    untagged, _done = a.command("SELECT INBOX")
    assert b"3 EXISTS" in joined(untagged) and b"3 RECENT" in joined(untagged), untagged
    untagged, _ = a.command("FETCH 1:* (FLAGS)")
    assert all(b"\\Recent" in u for u in untagged) and len(untagged) == 3
    untagged, _ = b.command("SELECT INBOX")
    assert b"3 EXISTS" in joined(untagged) and b"0 RECENT" in joined(untagged), untagged
    untagged, _ = b.command("FETCH 1:* (FLAGS)")
    assert not any(b"\\Recent" in u for u in untagged)
    # a new delivery (made by the main process): the first session to look takes it
    srv.deliver(ALICE, msg("r3"))
    seen_b, _ = b.command("NOOP")
    seen_a, _ = a.command("NOOP")
    assert b"* 4 EXISTS" in joined(seen_a) and b"* 4 EXISTS" in joined(seen_b)
    # B takes the new one; A keeps its three and gets none more
    assert b"* 1 RECENT" in joined(seen_b) and b"* 3 RECENT" in joined(seen_a), (seen_a, seen_b)
    untagged, _ = a.command("FETCH 4 (FLAGS)")
    assert b"\\Recent" not in untagged[0]
    untagged, _ = b.command("FETCH 4 (FLAGS)")
    assert b"\\Recent" in untagged[0]
    # EXAMINE never takes \Recent; a later SELECT elsewhere finds none left
    c = Wire(srv.host, srv.imap_port)
    c.login(ALICE, ALICE_PW)
    untagged, _ = c.command("SELECT INBOX")
    assert b"0 RECENT" in joined(untagged)
    for w in (a, b, c):
        w.close()


def test_changes_reach_the_other_process_with_the_right_responses(srv: ImapServer) -> None:
    for i in range(3):
        srv.deliver(ALICE, msg(f"c{i}"))
    a, b = pair_in_two_workers(srv)
    a.command("SELECT INBOX")
    b.command("SELECT INBOX")
    b.command("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")  # caches: listing, headers
    # a flag change in process A: B's next NOOP reports it
    _, done = a.command("STORE 1 +FLAGS (\\Flagged)")
    assert done.split()[1] == b"OK"
    untagged, _ = b.command("NOOP")
    assert untagged_matching(untagged, rb"^\* 1 FETCH \(.*FLAGS \([^)]*\\Flagged"), untagged
    # an APPEND in process A: EXISTS in B, and B reads the new message's own header
    _, done = a.command(b"APPEND INBOX {%d+}\r\n" % len(msg("appended")) + msg("appended"))
    assert b"APPENDUID" in done
    untagged, _ = b.command("NOOP")
    assert b"* 4 EXISTS" in joined(untagged)
    untagged, _ = b.command("FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: appended" in untagged[0]
    # an expunge in process A: B gets no EXPUNGE during FETCH, STORE or SEARCH ...
    a.command("STORE 2 +FLAGS.SILENT (\\Deleted)")
    untagged, _ = a.command("EXPUNGE")
    assert untagged == [b"* 2 EXPUNGE"]
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:  # give the event time to arrive, then keep asking
        for cmd in ("FETCH 1:* (FLAGS)", "STORE 1 +FLAGS.SILENT (\\Seen)", "SEARCH ALL"):
            untagged, done = b.command(cmd)
            # a FETCH naming the ghost may say so (as Dovecot does); never with an EXPUNGE
            assert done.split()[1] == b"OK" or b"[EXPUNGEISSUED]" in done, done
            assert not untagged_matching(untagged, rb"EXPUNGE"), (cmd, untagged)
        time.sleep(0.1)
    untagged, _ = b.command("SEARCH ALL")
    assert untagged == [b"* SEARCH 1 3 4"]  # the expunged message still holds its number for B
    # ... and hears it at the next NOOP
    untagged, _ = b.command("NOOP")
    assert b"* 2 EXPUNGE" in joined(untagged), untagged
    untagged, _ = b.command("SEARCH ALL")
    assert untagged == [b"* SEARCH 1 2 3"]
    untagged, _ = b.command("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: appended" in untagged[0]
    a.close()
    b.close()


def _idle_until(w: Wire, pattern: bytes, timeout: float) -> tuple[bytes, float]:
    t0 = time.monotonic()
    w.sock.settimeout(timeout)
    while True:
        line = w.read_response()
        if re.search(pattern, line):
            return line, time.monotonic() - t0


def test_idle_hears_lmtp_and_the_other_worker_within_a_second(srv: ImapServer) -> None:
    srv.deliver(ALICE, msg("i0"))
    a, b = pair_in_two_workers(srv)
    a.command("SELECT INBOX")
    b.command("SELECT INBOX")
    a.send(b"i1 IDLE\r\n")
    assert a.read_response().startswith(b"+ ")
    srv.deliver(ALICE, msg("i1"))  # LMTP: the main process
    t0 = time.monotonic()
    _line, _ = _idle_until(a, rb"^\* 2 EXISTS", 5)
    assert time.monotonic() - t0 < 1.0, "IDLE took over a second to report the delivery"
    t0 = time.monotonic()
    b.command(b"APPEND INBOX {%d+}\r\n" % len(msg("i2")) + msg("i2"))  # the other worker
    _idle_until(a, rb"^\* 3 EXISTS", 5)
    assert time.monotonic() - t0 < 1.0
    b.command("STORE 1 +FLAGS (\\Answered)")
    _idle_until(a, rb"^\* 1 FETCH \(.*\\Answered", 5)
    a.send(b"DONE\r\n")
    a.sock.settimeout(20)
    assert a.read_response().startswith(b"i1 OK")
    a.close()
    b.close()


def test_sessions_per_user_are_capped_across_workers(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv)  # cap is 3 (imap_max_per_user)
    third = Wire(srv.host, srv.imap_port)
    third.login(ALICE, ALICE_PW)
    pids = {serving_pid(srv, w) for w in (a, b, third)}
    assert len(pids) == 2
    for _ in range(4):  # a fourth, whichever worker takes it, is refused
        w = Wire(srv.host, srv.imap_port)
        _, done = w.command(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        assert done.split()[1] == b"NO" and b"[LIMIT]" in done, done
        w.close()
    a.command("LOGOUT")
    a.close()
    late = Wire(srv.host, srv.imap_port)

    def admitted() -> bool:
        _, done = late.command(f'LOGIN "{ALICE}" "{ALICE_PW}"')
        return done.split()[1] == b"OK"
    wait_for(admitted, 5, what="a freed slot")
    for w in (b, third, late):
        w.close()


def test_junk_moves_in_two_workers_are_learned_once_each(srv: ImapServer) -> None:
    srv.deliver(ALICE, msg("junk-a"))
    srv.deliver(ALICE, msg("junk-b"))
    a, b = pair_in_two_workers(srv)
    a.command("SELECT INBOX")
    b.command("SELECT INBOX")
    _, done = a.command("UID MOVE 1 Junk")
    assert done.split()[1] == b"OK", done
    _, done = b.command("UID MOVE 2 Junk")
    assert done.split()[1] == b"OK", done
    journal = srv.workdir / "model" / "feedback" / "journal.jsonl"

    def lines() -> list[dict]:
        try:
            return [json.loads(x) for x in journal.read_text().splitlines() if x.strip()]
        except FileNotFoundError:
            return []
    wait_for(lambda: len(lines()) >= 2, 20, what="both judgements in the feedback journal")
    time.sleep(1.5)  # three save intervals: a duplicate would have been written by now
    got = lines()
    assert len(got) == 2, got
    assert {j["label"] for j in got} == {"spam"} and len({j["digest"] for j in got}) == 2
    a.close()
    b.close()


def test_a_dead_worker_is_replaced_and_its_sessions_released(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv)  # two of the three sessions alice may have
    third = Wire(srv.host, srv.imap_port)
    third.login(ALICE, ALICE_PW)
    doomed = serving_pid(srv, a)
    survivors = [w for w in (b, third) if serving_pid(srv, w) != doomed]
    os.kill(doomed, 9)
    wait_for(lambda: len(worker_pids(srv)) == 2 and doomed not in worker_pids(srv), 20,
             what="a new worker in place of the killed one")
    for w in survivors:  # sessions in the other worker go on
        _, done = w.command("NOOP")
        assert done.split()[1] == b"OK"
    # the killed worker's sessions no longer count against the cap of 3
    fresh = []
    for _ in range(3 - len(survivors)):
        w = Wire(srv.host, srv.imap_port)
        w.login(ALICE, ALICE_PW)
        fresh.append(w)
    w = Wire(srv.host, srv.imap_port)
    _, done = w.command(f'LOGIN "{ALICE}" "{ALICE_PW}"')
    assert b"[LIMIT]" in done
    for c in (a, b, third, w, *fresh):
        c.close()


def test_workers_go_with_a_killed_main_process_and_the_port_is_free_again(srv: ImapServer) -> None:
    srv.deliver(ALICE, msg("k0"))
    workers = worker_pids(srv)
    assert len(workers) == 2
    assert srv.daemon is not None and srv.daemon.proc is not None
    os.kill(srv.daemon.pid, 9)  # the main process alone (not its process group)
    srv.daemon.proc.wait(10)

    def gone() -> bool:
        return not any(Path(f"/proc/{pid}").exists() and
                       "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers)
    wait_for(gone, 10, what="the workers of a killed mailsift serve to exit")
    srv.start()  # same config, same ports
    wait_for(lambda: len(worker_pids(srv)) == 2, 20, what="two new imap workers")
    w = Wire(srv.host, srv.imap_port)
    w.login(ALICE, ALICE_PW)
    untagged, _ = w.command("SELECT INBOX")
    assert b"* 1 EXISTS" in joined(untagged)
    w.close()


def test_connections_go_to_the_least_busy_worker(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv, login=False)  # both workers serve
    more = [Wire(srv.host, srv.imap_port) for _ in range(4)]
    counts: dict[int, int] = {}
    for w in (a, b, *more):
        pid = serving_pid(srv, w)
        counts[pid] = counts.get(pid, 0) + 1
    assert sorted(counts.values()) == [3, 3], counts
    # close two in one worker: the next two go there
    busy = serving_pid(srv, more[0])
    mine = [w for w in (a, b, *more) if serving_pid(srv, w) == busy][:2]
    closed_before = srv.log().count("a connection closed")
    for w in mine:
        w.command("LOGOUT")
        w.close()
    wait_for(lambda: srv.log().count("a connection closed") >= closed_before + 2, 10,
             what="the main process to hear that two connections closed")
    again = [Wire(srv.host, srv.imap_port) for _ in range(2)]
    assert [serving_pid(srv, w) for w in again] == [busy, busy]
    for w in (a, b, *more, *again):
        w.close()
