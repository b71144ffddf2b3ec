"""Sessions sharing one mailbox, through a real `mailsift serve` with two IMAP worker processes
(the sessions forced into different workers, as in test_workers.py):

- a keyword reaches a session in an untagged FLAGS and `OK [PERMANENTFLAGS (...)]` naming it
  before any FETCH does: after its own `STORE +FLAGS ($new)` (FLAGS first, as Dovecot sends
  it), after another process's STORE, and after another process's APPEND with a new keyword;
- a FETCH naming messages another session expunged, before this session was told, is served
  (tagged OK): flags, size and date from the view, bytes from the session's parsed-message
  cache or the worker's header cache when they hold them, Dovecot's NIL replies when nothing
  does; the EXPUNGEs come at the next NOOP with the numbers the client holds."""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.procs import wait_for

from imap.conftest import ImapServer
from imap.test_workers import ALICE, ALICE_PW, pair_in_two_workers, serving_pid, worker_pids
from imap.wire import Wire, fetch_items

pytestmark = pytest.mark.integration


def msg(subject: str, body: str = "") -> bytes:
    return (f"From: a@example.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.test>\r\n\r\n{body or 'body of ' + subject}\r\n").encode()


@pytest.fixture(scope="module")
def srv(mailsift_bin: str) -> Iterator[ImapServer]:
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-shared-"))
    server = ImapServer(mailsift_bin, workdir, {ALICE: ALICE_PW}, {"imap_workers": 2})
    server.start()
    wait_for(lambda: len(worker_pids(server)) == 2, 20, what="two imap workers")
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def fresh_folder(w: Wire, name: str, messages: list[bytes]) -> list[int]:
    w.command(f"DELETE {name}")
    _, done = w.command(f"CREATE {name}")
    assert ok(done), done
    uids = []
    for m in messages:
        _, done = w.command(b"APPEND %s {%d+}\r\n" % (name.encode(), len(m)) + m)
        uids.append(int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1)))
    return uids


class Announced:
    """What one client was told: the keywords of its last FLAGS and PERMANENTFLAGS."""

    def __init__(self) -> None:
        self.flags: set[str] = set()
        self.perm: set[str] = set()

    def check(self, untagged: list[bytes]) -> list[set[str]]:
        """Read responses in order: every keyword a FETCH names must have been announced in
        both before it. Returns the FLAGS of each FETCH."""
        seen = []
        for u in untagged:
            if m := re.match(rb"\* FLAGS \(([^)]*)\)", u):
                self.flags = set(m.group(1).decode().split())
            elif m := re.match(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)\]", u):
                self.perm = set(m.group(1).decode().split())
            elif re.match(rb"\* \d+ FETCH ", u) and b"FLAGS (" in u:
                flags = set(fetch_items(u)["FLAGS"]) - {"\\Recent"}
                keywords = {f for f in flags if not f.startswith("\\")}
                assert keywords <= self.flags, (u, "FLAGS never named", keywords - self.flags)
                assert keywords <= self.perm, (u, "PERMANENTFLAGS never named", keywords - self.perm)
                seen.append(flags)
        return seen


def test_own_store_of_a_new_keyword_announces_it_first(srv: ImapServer) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(ALICE, ALICE_PW)
    fresh_folder(w, "KwOwn", [msg("own1"), msg("own2")])
    told = Announced()
    untagged, _ = w.command("SELECT KwOwn")
    told.check(untagged)
    assert "$Fresh" not in told.flags
    untagged, done = w.command("STORE 2 +FLAGS ($Fresh)")
    assert ok(done), done
    assert [u[:10] for u in untagged] == [b"* FLAGS (\\", b"* OK [PERM", b"* 2 FETCH "], untagged
    assert told.check(untagged) == [{"$Fresh"}]
    # the same keyword again: nothing to announce; .SILENT on a new one still announces it
    untagged, _ = w.command("STORE 1 +FLAGS ($Fresh)")
    assert len(untagged) == 1 and told.check(untagged) == [{"$Fresh"}]
    untagged, _ = w.command("STORE 1 +FLAGS.SILENT (Quiet-Kw)")
    told.check(untagged)
    assert "Quiet-Kw" in told.flags and "Quiet-Kw" in told.perm
    untagged, _ = w.command("FETCH 1:2 (FLAGS)")
    assert told.check(untagged) == [{"$Fresh", "Quiet-Kw"}, {"$Fresh"}]
    # EXAMINE: announced in FLAGS, PERMANENTFLAGS stays empty
    untagged, _ = w.command("EXAMINE KwOwn")
    assert b"* OK [PERMANENTFLAGS ()] Read-only mailbox" in untagged
    assert any(u.startswith(b"* FLAGS (") and b"Quiet-Kw" in u for u in untagged)
    w.close()


def test_keywords_from_another_process_are_announced_before_any_fetch(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv)
    assert serving_pid(srv, a) != serving_pid(srv, b)
    fresh_folder(a, "KwShared", [msg(f"s{i}") for i in range(3)])
    told = Announced()
    a.command("SELECT KwShared")
    untagged, _ = b.command("SELECT KwShared")
    told.check(untagged)
    _, done = a.command("STORE 1 +FLAGS (Elsewhere-1)")
    assert ok(done)

    def b_sees(keyword: str, command: str) -> bool:
        untagged, done = b.command(command)
        assert ok(done), done
        return any(keyword in f for f in told.check(untagged))

    # B keeps asking; whichever command first carries the keyword must come after its FLAGS
    wait_for(lambda: b_sees("Elsewhere-1", "FETCH 1:* (UID FLAGS)"), 10, what="B to see Elsewhere-1")
    # B's own STORE returns a flag set holding a keyword set elsewhere
    _, done = a.command("STORE 2 +FLAGS.SILENT (Elsewhere-2)")
    assert ok(done)
    wait_for(lambda: b_sees("Elsewhere-2", "STORE 2 +FLAGS (\\Seen)"), 10, what="B to see Elsewhere-2")
    # an APPEND in the other process with a keyword nobody used: announced before EXISTS' FETCHes
    m = msg("appended")
    _, done = a.command(b"APPEND KwShared (Appended-Kw \\Flagged) {%d+}\r\n" % len(m) + m)
    assert ok(done)
    wait_for(lambda: b_sees("Appended-Kw", "FETCH 1:* (FLAGS)") or b_sees("Appended-Kw", "NOOP"), 10,
             what="B to see Appended-Kw")
    assert {"Elsewhere-1", "Elsewhere-2", "Appended-Kw"} <= told.flags & told.perm
    a.close()
    b.close()


def test_fetch_serves_messages_expunged_elsewhere_until_the_session_is_told(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv)
    subjects = [f"x{i}" for i in range(1, 13)]
    uids = fresh_folder(a, "Ghosts", [msg(s, f"text of {s}") for s in subjects])
    a.command("SELECT Ghosts")
    b.command("SELECT Ghosts")
    # B reads headers of 1:10 (its worker's header cache: 1..10; its parsed cache: the last 8)
    untagged, done = b.command("FETCH 1:10 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert ok(done) and len(untagged) == 10
    size_12 = fetch_items(b.command("FETCH 12 (RFC822.SIZE)")[0][0])["RFC822.SIZE"]
    # A expunges 1 (header cached in B's worker), 10 (parsed in B's session) and 12 (nothing cached)
    _, done = a.command("STORE 1,10,12 +FLAGS.SILENT (\\Deleted)")
    assert ok(done)
    untagged, done = a.command("EXPUNGE")
    assert ok(done) and untagged == [b"* 1 EXPUNGE", b"* 9 EXPUNGE", b"* 10 EXPUNGE"], untagged

    def fetch(cmd: str) -> tuple[list[bytes], bytes]:
        untagged, done = b.command(cmd)
        assert ok(done), (cmd, done)
        assert not any(u.endswith(b"EXPUNGE") for u in untagged), (cmd, untagged)
        return untagged, done

    # flags of all twelve, from the view (B may or may not have heard of the \Deleted first)
    untagged, _ = fetch("FETCH 1:12 (UID FLAGS)")
    assert [fetch_items(u)["UID"] for u in untagged] == uids
    # 10: its bytes from the session's parsed-message cache
    untagged, _ = fetch("FETCH 10 (UID BODY.PEEK[TEXT] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    items = fetch_items(untagged[0])
    assert items["UID"] == uids[9] and items["BODY[TEXT]"] == b"text of x10\r\n"
    # 1: its header from the header cache, no text left: NIL
    untagged, done = fetch("FETCH 1 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)] ENVELOPE BODY.PEEK[TEXT])")
    items = fetch_items(untagged[0])
    assert items["BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: x1\r\n\r\n"
    assert items["ENVELOPE"][1] == b"x1" and items["BODY[TEXT]"] is None and items["RFC822.SIZE"] > 0
    assert b"[EXPUNGEISSUED]" in done
    # 12: nothing cached: size and date from the view, Dovecot's NIL replies for the rest
    untagged, done = fetch("FETCH 12 (UID RFC822.SIZE INTERNALDATE BODY.PEEK[] ENVELOPE BODYSTRUCTURE RFC822.HEADER)")
    items = fetch_items(untagged[0])
    assert items["UID"] == uids[11] and items["RFC822.SIZE"] == size_12 and items["INTERNALDATE"]
    assert items["BODY[]"] is None and items["RFC822.HEADER"] is None
    assert items["ENVELOPE"] == [None] * 10
    assert items["BODYSTRUCTURE"] == [b"text", b"plain", None, None, None, b"7bit", 0, 0, None, None, None, None]
    # the untouched ones, in one FETCH with the others: right bytes, OK
    untagged, done = fetch("FETCH 1:12 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert len(untagged) == 12
    for u in untagged:
        items = fetch_items(u)
        i = uids.index(items["UID"])
        if i != 11:
            assert items["BODY[HEADER.FIELDS (SUBJECT)]"] == f"Subject: {subjects[i]}\r\n\r\n".encode()
    # told at the next NOOP, with the numbers B holds
    untagged, done = b.command("NOOP")
    assert ok(done) and [u for u in untagged if u.endswith(b"EXPUNGE")] == [b"* 1 EXPUNGE", b"* 9 EXPUNGE",
                                                                             b"* 10 EXPUNGE"], untagged
    untagged, done = b.command("FETCH 1:* (UID)")
    assert ok(done) and b"EXPUNGEISSUED" not in done
    assert [fetch_items(u)["UID"] for u in untagged] == [u for i, u in enumerate(uids) if i not in (0, 9, 11)]
    a.close()
    b.close()
