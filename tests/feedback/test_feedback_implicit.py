"""Implicit feedback end to end: a real `mailsift serve` (LMTP delivery, IMAP with imaplib) whose
feedback learner runs on a test clock the test advances by days (MAILSIFT_TEST_CLOCK_FILE,
mailsift/feedback/clock.py). The model starts empty, as on a new site: what users keep, answer,
file, reply to, leave in Junk or delete from it unread is learned; unread mail, mail read then deleted and
opted-out users teach nothing; a later contrary move wins; pending confirmations survive a restart;
the per-user daily cap defers the excess to the next day. Results are read from the learn record,
the feedback journal and the `mailsift learn --dump` / `mailsift feedback status` commands."""

from __future__ import annotations

import imaplib
import json
import os
import signal
import smtplib
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
from harness.procs import Daemon, child_pids, free_port, tcp_ready, wait_for

from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.store.users import Users

ALICE, BOB = "alice@example.test", "bob@example.test"
PASSWORD = "pw-implicit-1"
DAY = 86400


def message(n: int, subject: str) -> bytes:
    return (f"From: sender{n}@example.net\r\nTo: someone@example.test\r\nSubject: {subject} {n}\r\n"
            f"Message-ID: <implicit-{n}-{subject.replace(' ', '-')}@example.net>\r\n\r\n"
            f"Body of message {n}: {subject}, with some words number{n} to learn.\r\n").encode()


def flagged(raw: bytes) -> bytes:
    """As the milter passes a spam verdict on: LMTP files it into Junk."""
    return b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.9 required=5.0\r\n" + raw


class Served:
    """`mailsift serve` on free ports with an empty model dir and a test clock."""

    def __init__(self, workdir: Path, mailsift_bin: str, cap: int = 1000) -> None:
        self.workdir, self.bin = workdir, mailsift_bin
        self.model = workdir / "model"
        self.clock = workdir / "clock"
        self.clock.write_text("0")
        os.chmod(self.clock, 0o600)
        self.users = workdir / "users.db"
        db = Users(self.users)
        for user in (ALICE, BOB):
            db.add(user, PASSWORD)
        self.config = workdir / "mailsift.toml"
        self.imap_port, self.lmtp_port = free_port(), free_port()
        self.config.write_text(
            f'[classifier]\ndbpath = "{self.model}"\n'
            f'[store]\nmail_root = "{workdir / "mail"}"\nusers = "{self.users}"\n'
            f'lmtp = "127.0.0.1:{self.lmtp_port}"\nimap = "127.0.0.1:{self.imap_port}"\n'
            'pop3 = "off"\nlookup = "off"\nhostname = "imap.mailsift.test"\n'
            f'[feedback]\nsave_interval = 0.3\nconfirm_after = "2d"\nmax_learn_per_user_day = {cap}\n')
        self.env = dict(os.environ, MAILSIFT_TEST_CLOCK_FILE=str(self.clock))
        self.daemon: Daemon | None = None
        self.starts = 0

    def start(self) -> "Served":
        self.starts += 1
        log = self.workdir / "serve.log"
        marker = "learning from what users keep"
        seen = self.log().count(marker)
        self.daemon = Daemon([self.bin, "serve", "--config", str(self.config), "--log-level", "DEBUG"], log,
                             env=self.env).start()
        self.daemon.wait_ready(lambda: tcp_ready("127.0.0.1", self.imap_port)
                               and tcp_ready("127.0.0.1", self.lmtp_port)
                               and self.log().count(marker) > seen, 60, what="mailsift serve")
        return self

    def stop(self) -> None:
        if self.daemon is not None:
            assert self.daemon.stop(30) == 0
            self.daemon = None

    def log(self) -> str:
        try:
            return (self.workdir / "serve.log").read_text(errors="replace")
        except OSError:
            return ""

    def advance(self, seconds: float) -> None:
        self.clock.write_text(str(float(self.clock.read_text()) + seconds))

    def deliver(self, raw: bytes, user: str = ALICE) -> None:
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail("sender@example.net", [user], raw)

    def imap(self, user: str = ALICE) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
        imap.login(user, PASSWORD)
        return imap

    def label(self, raw: bytes) -> str | None:
        if not (self.model / "learned.sqlite").exists():
            return None
        with LearnRecord(self.model) as rec:
            known = rec.get(message_digest(raw))
        return known[0] if known else None

    def journal(self) -> list[dict]:
        path = self.model / "feedback" / "journal.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def run(self, *args: str) -> str:
        proc = subprocess.run([self.bin, *args], capture_output=True, text=True, env=self.env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout


@pytest.fixture
def served(tmp_path: Path, mailsift_bin: str) -> Iterator[Served]:
    srv = Served(tmp_path, mailsift_bin)
    yield srv.start()
    srv.stop()


def uid_of(imap: imaplib.IMAP4, raw: bytes) -> str:
    """The UID of `raw` in the selected folder, found by its Message-ID."""
    mid = raw.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
    typ, data = imap.uid("SEARCH", None, "HEADER", "Message-ID", f'"{mid}"')
    assert typ == "OK" and data[0], (mid, data)
    return data[0].split()[0].decode()


def test_kept_answered_filed_left_and_expunged_are_learned_then_a_contrary_move_wins(served: Served) -> None:
    kept, unread, answered, filed, trashed, replied = (message(i, "ham") for i in range(1, 7))
    left, expunged, read_then_deleted = (message(i, "spam") for i in range(1, 4))
    for raw in (kept, unread, answered, filed, trashed, replied):
        served.deliver(raw)
    for raw in (left, expunged, read_then_deleted):
        served.deliver(flagged(raw))

    imap = served.imap()
    try:
        imap.select("INBOX")
        assert imap.uid("FETCH", uid_of(imap, kept), "(BODY[])")[0] == "OK"       # read, then kept
        assert imap.uid("STORE", uid_of(imap, answered), "+FLAGS", r"(\Answered)")[0] == "OK"
        assert imap.create("Work")[0] == "OK"
        assert imap.uid("MOVE", uid_of(imap, filed), "Work")[0] == "OK"
        imap.uid("FETCH", uid_of(imap, trashed), "(BODY[])")
        assert imap.uid("MOVE", uid_of(imap, trashed), "Trash")[0] == "OK"       # deleted: no verdict
        reply = (b"From: alice@example.test\r\nTo: sender6@example.net\r\nSubject: Re: ham 6\r\n"
                 b"Message-ID: <reply-6@example.test>\r\nIn-Reply-To: <implicit-6-ham@example.net>\r\n\r\n"
                 b"Thanks!\r\n")   # sent by SMTP, filed into Sent by the client; no \Answered set
        assert imap.append("Sent", r"(\Seen)", None, reply)[0] == "OK"
        imap.select("Junk")
        assert imap.uid("STORE", uid_of(imap, expunged), "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        imap.uid("FETCH", uid_of(imap, read_then_deleted), "(BODY[])")
        assert imap.uid("STORE", uid_of(imap, read_then_deleted), "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
    finally:
        imap.logout()

    # At once: the reply, the filing into a user folder, the spam deleted from Junk unread.
    wait_for(lambda: [served.label(r) for r in (answered, filed, replied, expunged)] == ["ham", "ham", "ham", "spam"],
             timeout=60, what="the immediate confirmations learned")
    # the journal is written just after the model is saved
    wait_for(lambda: {"answered", "filed into Work", "replied", "expunged from Junk unread"}
             <= {j["reason"] for j in served.journal()}, timeout=30, what="the journal lines")
    assert served.label(kept) is None and served.label(left) is None   # not 2 days yet

    served.advance(2 * DAY + 3600)
    wait_for(lambda: (served.label(kept), served.label(left)) == ("ham", "spam"), timeout=60,
             what="kept ham and spam left in Junk learned after confirm_after")
    for raw in (unread, trashed, read_then_deleted):
        assert served.label(raw) is None, raw[:80]
    dump = served.run("learn", "--dump", "--dbpath", str(served.model))
    assert "learn record: 4 ham, 2 spam" in dump, dump
    assert "ham: 4\n" in dump and "spam: 2\n" in dump, dump

    # Confirmed ham moved to Junk later: unlearned as ham, learned as spam.
    imap = served.imap()
    try:
        imap.select("INBOX")
        assert imap.uid("MOVE", uid_of(imap, kept), "Junk")[0] == "OK"
    finally:
        imap.logout()
    wait_for(lambda: served.label(kept) == "spam" and len(served.journal()) == 7, timeout=60,
             what="the contrary move learned and journalled")
    dump = served.run("learn", "--dump", "--dbpath", str(served.model))
    assert "learn record: 3 ham, 3 spam" in dump and "ham: 3\n" in dump and "spam: 3\n" in dump, dump
    outcomes = [(j["reason"], j["outcome"]) for j in served.journal() if j["digest"] == message_digest(kept)]
    assert outcomes == [("kept in INBOX 2d", "learned"), ("move into Junk", "moved")], outcomes

    # ... and leaving it in Junk 2 days more does not confirm it again (learn-on-move had it).
    served.advance(2 * DAY + 3600)
    status = served.run("feedback", "status", "--config", str(served.config))
    assert "pending confirmations: 1 ham, 0 spam" in status, status   # only the unread one


def test_opted_out_user_teaches_nothing_implicitly(served: Served) -> None:
    assert not (served.model / "feedback").exists()   # nothing filed yet: no state file either
    assert "implicit feedback off for bob@example.test" in served.run(
        "user", "set", BOB, "--no-implicit-feedback", "--users", str(served.users))
    bob_kept, bob_answered, alice_kept = message(1, "bob ham"), message(2, "bob ham"), message(3, "alice ham")
    bob_left = message(4, "bob spam")
    served.deliver(bob_kept, BOB)
    served.deliver(bob_answered, BOB)
    served.deliver(flagged(bob_left), BOB)
    served.deliver(alice_kept, ALICE)
    for user, raws in ((BOB, (bob_kept, bob_answered)), (ALICE, (alice_kept,))):
        imap = served.imap(user)
        try:
            imap.select("INBOX")
            for raw in raws:
                imap.uid("FETCH", uid_of(imap, raw), "(BODY[])")
            if user == BOB:
                imap.uid("STORE", uid_of(imap, bob_answered), "+FLAGS", r"(\Answered)")
        finally:
            imap.logout()
    served.advance(2 * DAY + 3600)
    wait_for(lambda: served.label(alice_kept) == "ham", timeout=60, what="alice's kept mail learned")
    for raw in (bob_kept, bob_answered, bob_left):
        assert served.label(raw) is None
    assert not [j for j in served.journal() if j["user"] == BOB]
    # A said judgement still counts for an opted-out user: only implicit feedback is off.
    imap = served.imap(BOB)
    try:
        imap.select("INBOX")
        assert imap.uid("MOVE", uid_of(imap, bob_kept), "Junk")[0] == "OK"
    finally:
        imap.logout()
    wait_for(lambda: served.label(bob_kept) == "spam", timeout=60, what="bob's move into Junk learned")


def test_pending_confirmations_survive_a_restart(tmp_path: Path, mailsift_bin: str) -> None:
    served = Served(tmp_path, mailsift_bin).start()
    try:
        kept, left, deleted_later = message(1, "ham"), message(1, "spam"), message(2, "spam")
        served.deliver(kept)
        served.deliver(flagged(left))
        served.deliver(flagged(deleted_later))
        imap = served.imap()
        try:
            imap.select("INBOX")
            imap.uid("FETCH", uid_of(imap, kept), "(BODY[])")
        finally:
            imap.logout()
        served.stop()
        served.start()
        # Deleted unread after the restart: its bytes were kept with the pending entry.
        imap = served.imap()
        try:
            imap.select("Junk")
            imap.uid("STORE", uid_of(imap, deleted_later), "+FLAGS.SILENT", r"(\Deleted)")
            assert imap.expunge()[0] == "OK"
        finally:
            imap.logout()
        wait_for(lambda: served.label(deleted_later) == "spam", timeout=60, what="the spam deleted unread learned")
        assert served.label(kept) is None and served.label(left) is None
        served.advance(2 * DAY + 3600)
        wait_for(lambda: (served.label(kept), served.label(left)) == ("ham", "spam"), timeout=60,
                 what="confirmations from before the restart learned")
    finally:
        served.stop()


def test_daily_cap_defers_the_excess_to_the_next_day(tmp_path: Path, mailsift_bin: str) -> None:
    served = Served(tmp_path, mailsift_bin, cap=2).start()
    try:
        raws = [message(i, "spam moved") for i in range(1, 5)]
        for raw in raws:
            served.deliver(raw)
        imap = served.imap()
        try:
            imap.select("INBOX")
            for raw in raws:  # one by one, in this order: the first two fit into today's cap
                assert imap.uid("MOVE", uid_of(imap, raw), "Junk")[0] == "OK"
        finally:
            imap.logout()
        wait_for(lambda: sum(j["outcome"] == "deferred" for j in served.journal()) == 2, timeout=60,
                 what="two judgements deferred")
        assert [served.label(r) for r in raws] == ["spam", "spam", None, None]
        assert served.log().count("over the daily cap (2)") == 2
        status = served.run("feedback", "status", "--config", str(served.config))
        assert "deferred over the cap: 2 judgement(s)" in status, status
        assert f"user {ALICE}: learned 2 today" in status and "2 waiting" in status, status
        # The deferred messages are not current judgements: retrain would not learn them yet.
        from mailsift.feedback.spool import Spool
        assert len(Spool(served.model).current()) == 2

        served.advance(DAY)
        wait_for(lambda: [served.label(r) for r in raws] == ["spam"] * 4 and len(served.journal()) == 6,
                 timeout=60, what="the deferred judgements learned and journalled the next day")
        status = served.run("feedback", "status", "--config", str(served.config))
        assert "deferred over the cap: 0 judgement(s)" in status and "learned 2 today" in status, status
        assert len(Spool(served.model).current()) == 4
    finally:
        served.stop()


def test_changes_made_just_before_a_stop_are_kept(tmp_path: Path, mailsift_bin: str) -> None:
    """The tracker records changes in batches (a tenth of a second's worth): what waits for it
    when the server stops is recorded by the stop, and confirmed after the restart."""
    served = Served(tmp_path, mailsift_bin).start()
    try:
        hams = [message(i, "batched ham") for i in range(1, 31)]
        spam = message(1, "batched spam")
        for raw in hams:
            served.deliver(raw)
        served.deliver(flagged(spam))
        imap = served.imap()
        try:
            imap.select("INBOX")
            assert imap.fetch("1:*", "(BODY[])")[0] == "OK"     # 30 read at once, then stop
        finally:
            imap.logout()
        served.stop()
        status = served.run("feedback", "status", "--config", str(served.config))
        assert "pending confirmations: 30 ham, 1 spam" in status, status
        served.start()
        served.advance(2 * DAY + 3600)
        wait_for(lambda: [served.label(r) for r in hams + [spam]] == ["ham"] * 30 + ["spam"], timeout=60,
                 what="the mail read just before the stop learned as kept")
    finally:
        served.stop()


def test_a_move_made_just_before_a_stop_is_learned(tmp_path: Path, mailsift_bin: str) -> None:
    """An IMAP worker holds the events only the learner wants for a moment (serve/workers.py's
    EVENT_DELAY): when the server stops, it passes them on first, and the learner learns them."""
    served = Served(tmp_path, mailsift_bin).start()
    try:
        raw = message(1, "moved at the stop")
        served.deliver(raw)
        imap = served.imap()
        try:
            imap.select("INBOX")
            assert imap.uid("MOVE", uid_of(imap, raw), "Junk")[0] == "OK"
        finally:
            imap.logout()
        served.stop()
        assert served.label(raw) == "spam"
        assert [(j["reason"], j["outcome"]) for j in served.journal()] == [("move into Junk", "learned")]
    finally:
        served.stop()


def test_a_move_into_junk_survives_its_worker_killed_at_once(tmp_path: Path, mailsift_bin: str) -> None:
    """A worker holds for a moment only the changes the implicit tracker wants: a move into Junk,
    which the learner learns from, is passed on at once, so a worker killed right after the
    client got its OK has lost nothing the learner needed."""
    served = Served(tmp_path, mailsift_bin).start()
    try:
        assert served.daemon is not None
        raw = message(1, "moved, then the worker dies")
        served.deliver(raw)
        imap = served.imap()
        imap.select("INBOX")
        workers = [pid for pid in child_pids(served.daemon.pid)
                   if b"mailsift.serve.workers" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert workers, "the server runs IMAP workers"
        assert imap.uid("MOVE", uid_of(imap, raw), "Junk")[0] == "OK"
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: served.label(raw) == "spam", 30, what="the move into Junk learned")
        # the journal line follows the learning (its outcome is what the learning did)
        assert wait_for(lambda: [(j["reason"], j["outcome"]) for j in served.journal()] == [("move into Junk", "learned")],
                        30, what="the move journalled as learned")
    finally:
        served.stop()
