"""Contention: 10 IMAP sessions of one user on one shared INBOX, served by `mailsift serve` with
two IMAP worker processes, storing keywords nobody used before, flagging and expunging, moving
out, appending and fetching concurrently for a few seconds. A client-side checker follows each
session's responses in order and holds the server to the rules a client depends on:

- every keyword a FETCH names was announced to that session before, in an untagged `FLAGS`
  and in `OK [PERMANENTFLAGS (...)]`;
- no NO [EXPUNGEISSUED] (nor any other tagged answer but OK): a FETCH answers for every message
  the session still sees, and every UID the FETCH responses carry is the one the session's
  own numbering (EXISTS and EXPUNGE as received) puts at that sequence number;
- no EXPUNGE during FETCH, STORE or SEARCH by sequence number; EXISTS never shrinks the
  mailbox; EXPUNGE names a number the session has;
- header bytes served for a UID are that message's;
- at the end every session, after a NOOP, holds exactly the UIDs the store has."""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.procs import wait_for

from imap.conftest import ImapServer
from imap.test_workers import serving_pid, worker_pids
from imap.wire import Wire, fetch_items

pytestmark = pytest.mark.integration

USER, PASSWORD = "shared@example.test", "shared-pw"
SESSIONS = 10
DURATION = 4.0          # seconds of concurrent load
START_MESSAGES = 40
KEYWORDS = [f"Kw{i}" for i in range(40)]  # none in use at the start: each is new once

_FETCH_RE = re.compile(rb"^\* (\d+) FETCH ")
_SUBJECT_RE = re.compile(rb"Subject: (\S+)")


def message(token: str) -> bytes:
    return (f"From: load@example.test\r\nTo: {USER}\r\nSubject: {token}\r\n"
            f"Message-ID: <{token}@example.test>\r\n\r\nbody of {token}\r\n" + "filler line\r\n" * 20).encode()


@pytest.fixture
def srv(mailsift_bin: str) -> Iterator[ImapServer]:
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-contention-"))
    server = ImapServer(mailsift_bin, workdir, {USER: PASSWORD}, {"imap_workers": 2})
    server.start()
    wait_for(lambda: len(worker_pids(server)) == 2, 20, what="two imap workers")
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


class Tokens:
    """UID -> the Subject token of the message APPENDed with it (shared by all sessions)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_uid: dict[int, str] = {}
        self._n = 0

    def new(self, who: str) -> str:
        with self._lock:
            self._n += 1
            return f"t{who}-{self._n}"

    def record(self, uid: int, token: str) -> None:
        with self._lock:
            self._by_uid[uid] = token

    def of(self, uid: int) -> str | None:
        with self._lock:
            return self._by_uid.get(uid)


class CheckedSession:
    """One client: sends commands, follows the untagged responses and checks them."""

    def __init__(self, srv: ImapServer, name: str, tokens: Tokens, seed: int) -> None:
        self.name = name
        self.tokens = tokens
        self.rng = random.Random(seed)
        self.wire = Wire(srv.host, srv.imap_port)
        self.wire.login(USER, PASSWORD)
        self.uids: list[int | None] = []   # sequence number - 1 -> UID (None: not learnt yet)
        self.flags_kw: set[str] = set()
        self.perm_kw: set[str] = set()
        self.errors: list[str] = []
        self.stats: Counter[str] = Counter()
        self.log: list[bytes] = []         # the last exchanges, for the failure message

    # -- the checker ---------------------------------------------------------------------------
    def fail(self, what: str) -> None:
        self.errors.append(f"{self.name}: {what}")

    def command(self, text: bytes | str, kind: str, by_uid: bool = False, seqs: set[int] | None = None,
                uids: set[int] | None = None, item: str = "FLAGS") -> tuple[list[bytes], bytes]:
        """Run one command and check every response. `kind` names the command (FETCH, STORE,
        ...); for a FETCH, `seqs` (by sequence number) or `uids` (by UID) are what it names,
        each to be answered with a FETCH response holding `item` (other FETCH responses may
        come too: flag changes made elsewhere)."""
        untagged, done = self.wire.command(text)
        self.log = (self.log + [text if isinstance(text, bytes) else text.encode()] + untagged + [done])[-60:]
        self.stats[kind] += 1
        status = done.split(b" ", 2)[1:2]
        if status != [b"OK"]:
            self.fail(f"{kind} answered {done!r}")
        expunged_now: set[int] = set()
        answered_seqs: set[int] = set()
        answered_uids: set[int] = set()
        for u in untagged:
            self.absorb(u, kind, by_uid, expunged_now, answered_seqs, answered_uids, item)
        if kind == "FETCH" and status == [b"OK"]:
            if seqs is not None and not seqs <= answered_seqs:
                self.fail(f"FETCH of {sorted(seqs)} answered for {sorted(answered_seqs)}: {done!r}")
            if uids is not None and not uids - expunged_now <= answered_uids:
                self.fail(f"UID FETCH of {sorted(uids)} answered for {sorted(answered_uids)} "
                          f"(expunged meanwhile: {sorted(expunged_now)})")
            if b"EXPUNGEISSUED" in done:
                self.stats["ok-expungeissued"] += 1
        return untagged, done

    def absorb(self, u: bytes, kind: str, by_uid: bool, expunged_now: set[int],
               answered_seqs: set[int], answered_uids: set[int], item: str) -> None:
        if m := re.match(rb"\* FLAGS \(([^)]*)\)", u):
            self.flags_kw = {f for f in m.group(1).decode().split() if not f.startswith("\\")}
            if kind != "SELECT":
                self.stats["flags-announced"] += 1
        elif m := re.match(rb"\* OK \[PERMANENTFLAGS \(([^)]*)\)\]", u):
            self.perm_kw = {f for f in m.group(1).decode().split() if not f.startswith("\\")}
        elif m := re.match(rb"\* (\d+) EXISTS$", u):
            n = int(m.group(1))
            if n < len(self.uids):
                self.fail(f"EXISTS {n} below the {len(self.uids)} messages held, without EXPUNGE")
            self.uids += [None] * (n - len(self.uids))
        elif m := re.match(rb"\* (\d+) EXPUNGE$", u):
            n = int(m.group(1))
            if kind in ("FETCH", "STORE", "SEARCH") and not by_uid:
                self.fail(f"EXPUNGE during {kind} by sequence number: {u!r}")
            if not 1 <= n <= len(self.uids):
                self.fail(f"EXPUNGE {n} of {len(self.uids)} messages")
                return
            gone = self.uids.pop(n - 1)
            if gone is not None:
                expunged_now.add(gone)
            self.stats["expunges-heard"] += 1
        elif m := _FETCH_RE.match(u):
            self.check_fetch(int(m.group(1)), u, answered_seqs, answered_uids, item)
        elif re.match(rb"\* (\d+ RECENT|OK \[COPYUID |SEARCH|CAPABILITY|OK \[CLOSED\]|OK \[(UNSEEN|UIDVALIDITY"
                      rb"|UIDNEXT|HIGHESTMODSEQ) )", u):
            pass
        else:
            self.fail(f"unexpected response {u[:200]!r}")

    def check_fetch(self, seq: int, u: bytes, answered_seqs: set[int], answered_uids: set[int],
                    item: str) -> None:
        if not 1 <= seq <= len(self.uids):
            self.fail(f"FETCH for {seq} of {len(self.uids)} messages: {u[:200]!r}")
            return
        items = fetch_items(u)
        answered = item in items
        if answered:
            answered_seqs.add(seq)
        uid = items.get("UID")
        if uid is not None:
            held = self.uids[seq - 1]
            if held is None:
                lower = [x for x in self.uids[:seq - 1] if x is not None]
                upper = [x for x in self.uids[seq:] if x is not None]
                if (lower and lower[-1] >= uid) or (upper and upper[0] <= uid):
                    self.fail(f"UID {uid} at {seq} out of order with the UIDs held")
                self.uids[seq - 1] = uid
            elif held != uid:
                self.fail(f"FETCH {seq} says UID {uid}, the session's numbering says {held}")
            if answered:
                answered_uids.add(uid)
        flags = items.get("FLAGS")
        if flags is not None:
            keywords = {f for f in flags if not f.startswith("\\")}
            if not keywords <= self.flags_kw:
                self.fail(f"FETCH names {sorted(keywords - self.flags_kw)} before FLAGS did: {u[:200]!r}")
            if not keywords <= self.perm_kw:
                self.fail(f"FETCH names {sorted(keywords - self.perm_kw)} before PERMANENTFLAGS did")
        uid = uid if uid is not None else self.uids[seq - 1]
        for name, value in items.items():
            if name.startswith("BODY[") and isinstance(value, bytes) and uid is not None:
                found = _SUBJECT_RE.search(value)
                want = self.tokens.of(uid)
                if found and want is not None and found.group(1).decode() != want:
                    self.fail(f"UID {uid} served the bytes of {found.group(1)!r}, not {want}")
                self.stats["bytes-checked"] += 1
            elif name.startswith("BODY[") and value is None:
                self.stats["nil-bytes"] += 1

    # -- the load ------------------------------------------------------------------------------
    def some_seqs(self) -> set[int]:
        n = len(self.uids)
        lo = self.rng.randint(1, n)
        return set(range(lo, min(n, lo + self.rng.randint(0, 4)) + 1))

    def known_uid(self) -> int | None:
        known = [x for x in self.uids if x is not None]
        return self.rng.choice(known) if known else None

    def append(self) -> None:
        token = self.tokens.new(self.name)
        m = message(token)
        kw = f" ({self.rng.choice(KEYWORDS)})" if self.rng.random() < 0.5 else ""
        _, done = self.command(b"APPEND INBOX%s {%d+}\r\n" % (kw.encode(), len(m)) + m, "APPEND")
        if found := re.search(rb"APPENDUID \d+ (\d+)", done):
            self.tokens.record(int(found.group(1)), token)

    def step(self) -> None:
        r = self.rng.random()
        if not self.uids or r < 0.12:
            self.append()
            return
        seqs = self.some_seqs()
        spec = ",".join(map(str, sorted(seqs)))
        if r < 0.30:
            self.command(f"FETCH {spec} (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "FETCH", seqs=seqs,
                         item="BODY[HEADER.FIELDS (SUBJECT)]")
        elif r < 0.40:
            self.command(f"FETCH {spec} (UID BODY.PEEK[] RFC822.SIZE)", "FETCH", seqs=seqs, item="BODY[]")
        elif r < 0.45:
            self.command(f"FETCH {spec} (UID ENVELOPE BODYSTRUCTURE FLAGS)", "FETCH", seqs=seqs, item="ENVELOPE")
        elif r < 0.52:
            uid = self.known_uid()
            if uid is not None:
                self.command(f"UID FETCH {uid} (FLAGS BODY.PEEK[HEADER])", "FETCH", by_uid=True, uids={uid},
                             item="BODY[HEADER]")
        elif r < 0.55:
            n = len(self.uids)
            self.command("FETCH 1:* (UID FLAGS)", "FETCH", seqs=set(range(1, n + 1)))
        elif r < 0.72:
            sign = "-" if self.rng.random() < 0.2 else "+"
            self.command(f"STORE {spec} {sign}FLAGS ({self.rng.choice(KEYWORDS)})", "STORE")
        elif r < 0.76:
            uid = self.known_uid()
            if uid is not None:
                self.command(f"UID STORE {uid} +FLAGS ({self.rng.choice(KEYWORDS)} \\Seen)", "STORE", by_uid=True)
        elif r < 0.84:
            self.command(f"STORE {self.rng.choice(sorted(seqs))} +FLAGS.SILENT (\\Deleted)", "STORE")
            if self.rng.random() < 0.5:
                self.command("EXPUNGE", "EXPUNGE")
            else:
                uid = self.known_uid()
                if uid is not None:
                    self.command(f"UID EXPUNGE {uid}", "EXPUNGE", by_uid=True)
        elif r < 0.90:
            if self.rng.random() < 0.5:
                self.command(f"MOVE {self.rng.choice(sorted(seqs))} Other", "MOVE")
            else:
                uid = self.known_uid()
                if uid is not None:
                    self.command(f"UID MOVE {uid} Other", "MOVE", by_uid=True)
        elif r < 0.95:
            self.command("NOOP", "NOOP")
        else:
            self.command("SEARCH ALL", "SEARCH")

    def run(self, until: float, failures: list[str]) -> None:
        try:
            while time.monotonic() < until and not self.errors:
                self.step()
        except Exception as exc:  # noqa: BLE001 - reported with the transcript
            failures.append(f"{self.name}: {exc!r}")


def test_ten_sessions_in_two_workers_keep_to_the_rules(srv: ImapServer) -> None:
    tokens = Tokens()
    setup = Wire(srv.host, srv.imap_port)
    setup.login(USER, PASSWORD)
    _, done = setup.command("CREATE Other")
    assert b" OK" in done, done
    for i in range(START_MESSAGES):
        token = tokens.new("setup")
        m = message(token)
        _, done = setup.command(b"APPEND INBOX {%d+}\r\n" % len(m) + m)
        tokens.record(int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1)), token)
    setup.close()

    sessions = [CheckedSession(srv, f"s{i}", tokens, seed=1000 + i) for i in range(SESSIONS)]
    pids = Counter(serving_pid(srv, s.wire) for s in sessions)
    assert len(pids) == 2, f"the sessions were not spread over both workers: {pids}"
    for s in sessions:
        s.command("SELECT INBOX", "SELECT")
        assert len(s.uids) == START_MESSAGES

    failures: list[str] = []
    until = time.monotonic() + DURATION
    threads = [threading.Thread(target=s.run, args=(until, failures), name=s.name) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=DURATION + 120)
    assert not any(t.is_alive() for t in threads), "a session hung"

    # quiet now: each session's NOOP re-reads the folder and must leave it holding the store's UIDs
    final = Wire(srv.host, srv.imap_port)
    final.login(USER, PASSWORD)
    final.command("EXAMINE INBOX")
    untagged, _ = final.command("UID SEARCH ALL")
    store_uids = [int(x) for x in untagged[0].split()[2:]]
    final.close()
    for s in sessions:
        s.command("NOOP", "NOOP")
        n = len(s.uids)
        s.command("FETCH 1:* (UID FLAGS)", "FETCH", seqs=set(range(1, n + 1)))
        if s.uids != store_uids:
            s.fail(f"holds {s.uids}, the store has {store_uids}")
        s.wire.command("LOGOUT")
        s.wire.close()

    errors = failures + [e for s in sessions for e in s.errors]
    if errors:
        worst = next(s for s in sessions if s.errors) if any(s.errors for s in sessions) else sessions[0]
        transcript = b"\n".join(line[:300] for line in worst.log).decode("utf-8", "replace")
        pytest.fail(f"{len(errors)} rule violations, first: {errors[:10]}\n--- {worst.name}:\n{transcript}")

    # the load did what it is for: every kind of change, seen by the other sessions
    total = sum((s.stats for s in sessions), Counter())
    for kind in ("APPEND", "FETCH", "STORE", "EXPUNGE", "MOVE"):
        assert total[kind] >= 5, total
    assert total["flags-announced"] >= SESSIONS, total   # new keywords reached sessions after SELECT
    assert total["expunges-heard"] > total["EXPUNGE"], total  # others' expunges and moves were heard
    assert total["bytes-checked"] > 0, total
