"""Implicit feedback's rules on a real Store (temp mail root) and real state file, without a
server: which user actions confirm, which drop a pending message, and how the learner treats an
implicit judgement against the learn record. Plus the settings and the test clock's guard."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest
from harness.procs import wait_for

from mailsift.classifier.learn import Learner
from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.config import ConfigError, parse_config
from mailsift.feedback.clock import ENV_VAR, FileClock, clock_from_env
from mailsift.feedback.implicit import ImplicitTracker
from mailsift.feedback.learner import FeedbackLearner
from mailsift.feedback.settings import parse_duration
from mailsift.feedback.spool import Spool
from mailsift.feedback.state import State

USER = "dora@example.test"
DAY = 86400.0


def message(n: int) -> bytes:
    return (f"From: a{n}@example.net\nSubject: note {n}\nMessage-ID: <rules-{n}@example.net>\n\n"
            f"text of note {n} word{n}\n").encode()


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def tracked(store, tmp_path: Path) -> Iterator[tuple[ImplicitTracker, Clock]]:
    state = State(tmp_path / "model")
    clock = Clock()
    out: set[str] = set()
    tracker = ImplicitTracker(store, state, clock, 2 * DAY, opted_out=lambda u: u in out)
    tracker.opted_out_users = out  # type: ignore[attr-defined]
    sub = store.subscribe(tracker.on_event)
    yield tracker, clock
    sub.close()
    state.close()


def due(tracker: ImplicitTracker) -> dict[tuple[str, int], tuple[str, str]]:
    return {(a.folder, a.uid): (a.label, a.reason) for a in tracker.sweep()}


def test_junk_to_trash_unread_is_spam_read_is_nothing_answered_in_junk_is_nothing(store, tracked) -> None:
    tracker, clock = tracked
    box = store.mailbox(USER)
    a, b, c = (box.deliver(message(i), folder="Junk").uid for i in (1, 2, 3))
    [(_, a_trash)] = box.move("Junk", [a], "Trash")
    box.store_flags("Junk", [b], {"\\Seen"}, "add")
    [(_, b_trash)] = box.move("Junk", [b], "Trash")
    box.store_flags("Junk", [c], {"\\Answered"}, "add")
    assert due(tracker) == {("Trash", a_trash): ("spam", "moved from Junk to Trash unread")}
    clock.t += 3 * DAY
    assert due(tracker) == {}  # b (read, then thrown away) and c (answered in Junk) were dropped


def test_unread_ham_waits_read_ham_confirms_append_counts_keywords_do_not(store, tracked) -> None:
    tracker, clock = tracked
    box = store.mailbox(USER)
    read, unread = box.deliver(message(1)).uid, box.deliver(message(2)).uid
    appended = box.append("INBOX", message(3), flags={"\\Seen"}).uid
    keyword = box.append("INBOX", message(4), flags={"\\Seen", "$NonJunk"}).uid
    sent = box.append("Sent", message(5), flags={"\\Seen"}).uid
    box.store_flags("INBOX", [read], {"\\Seen"}, "add")
    clock.t += 2 * DAY - 60
    assert due(tracker) == {}
    clock.t += 120
    got = due(tracker)
    assert got == {("INBOX", read): ("ham", "kept in INBOX 2d"), ("INBOX", appended): ("ham", "kept in INBOX 2d")}
    assert ("INBOX", unread) not in got and ("INBOX", keyword) not in got and ("Sent", sent) not in got
    box.store_flags("INBOX", [unread], {"\\Seen"}, "add")   # read later: confirmed at the next sweep
    assert due(tracker) == {("INBOX", unread): ("ham", "kept in INBOX 2d")}


def test_moves_copies_renames_and_opt_out(store, tracked) -> None:
    tracker, clock = tracked
    box = store.mailbox(USER)
    box.create_folder("Projects")
    to_junk, copied, renamed, opted = (box.deliver(message(i)).uid for i in range(1, 5))
    box.move("INBOX", [to_junk], "Junk")                    # learn-on-move's: no longer pending
    [(_, copy_uid)] = box.copy("INBOX", [copied], "Projects")
    box.move("INBOX", [renamed], "Projects")                 # confirmed at once in Projects ...
    box.rename_folder("Projects", "Work")                    # ... and followed through the rename
    junk_uid = box.deliver(message(6), folder="Junk").uid
    box.move("Junk", [junk_uid], "INBOX")                    # rescued: learn-on-move's
    got = due(tracker)
    assert set(got) == {("Work", copy_uid), ("Work", copy_uid + 1)}, got
    assert {v for v in got.values()} == {("ham", "filed into Projects")}
    tracker.opted_out_users.add(USER)  # type: ignore[attr-defined]
    tracker._optout_cache.clear()
    box.store_flags("INBOX", [opted], {"\\Seen"}, "add")
    clock.t += 3 * DAY
    assert due(tracker) == {}
    assert tracker.state.get_pending(USER, "INBOX", opted) is None   # dropped, not kept for later
    assert tracker.state.summary(0)["pending"] == {"ham": 2}          # only the two handed out


def test_implicit_never_overrides_the_record_and_a_said_judgement_wins(store, tmp_path: Path) -> None:
    model = tmp_path / "model"
    learned_by_hand = message(1)
    with Learner(model) as learner:   # `mailsift learn --spam` of the same message earlier
        learner.learn_labelled([("x", learned_by_hand, "spam")])
        learner.save()
    clock = Clock()
    fl = FeedbackLearner(store, model, save_interval=0.2, confirm_after=2 * DAY, clock=clock,
                         sweep_interval=0.1).start()
    try:
        box = store.mailbox(USER)
        uid = box.deliver(learned_by_hand).uid
        box.store_flags("INBOX", [uid], {"\\Answered"}, "add")
        raced = box.deliver(message(2)).uid
        box.store_flags("INBOX", [raced], {"\\Seen"}, "add")
        clock.t += 3 * DAY
        assert fl.wait_idle()                        # the tracker has seen every change
        fl.sweep()                                   # the implicit ham is queued first ...
        box.store_flags("INBOX", [raced], {"$Junk"}, "add")  # ... the user's verdict right after
        wait_for(lambda: fl.wait_idle(1) and fl.tracker.state.summary(0)["pending"] == {}, timeout=30,
                 what="the learner done")
        with LearnRecord(model) as rec:
            assert rec.get(message_digest(learned_by_hand))[0] == "spam"
            assert rec.get(message_digest(message(2)))[0] == "spam"
        outcomes = {(j.reason, j.outcome) for j in Spool(model).judgements()}
        assert ("answered", "overruled") in outcomes
        assert not any(j.outcome == "overruled" for j in Spool(model).current())
    finally:
        fl.stop()


def test_settings_and_the_test_clock_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_duration("2d") == 2 * DAY and parse_duration("36h") == 36 * 3600 and parse_duration("90") == 90
    for bad in ("2x", "soon", "30m", "100d"):
        with pytest.raises(ConfigError, match="confirm_after"):
            parse_config({"feedback": {"confirm_after": bad}})
    with pytest.raises(ConfigError, match="max_learn_per_user_day"):
        parse_config({"feedback": {"max_learn_per_user_day": -1}})
    assert parse_config({"feedback": {"confirm_after": "36h"}}).feedback.confirm_after_seconds() == 36 * 3600

    path = tmp_path / "clock"
    path.write_text(str(5 * DAY))
    os.chmod(path, 0o600)
    monkeypatch.setenv(ENV_VAR, str(path))
    clock = clock_from_env()
    assert isinstance(clock, FileClock) and abs(clock() - time.time() - 5 * DAY) < 5
    os.chmod(path, 0o622)                       # others may write it: refused, the real clock runs
    assert clock_from_env() is time.time
    monkeypatch.delenv(ENV_VAR)
    assert clock_from_env() is time.time


def test_state_stays_bounded(store, tracked, tmp_path: Path) -> None:
    tracker, clock = tracked
    box = store.mailbox(USER)
    big = message(1) + b"x" * (300 * 1024)
    uid = box.deliver(big, folder="Junk").uid
    box.store_flags("Junk", [uid], {"\\Deleted"}, "add")
    box.expunge("Junk")
    assert due(tracker) == {}       # over 256 KB: not kept, so not learned once deleted

    state = tracker.state
    for i in range(30):
        state.add_pending("eve@example.test", "Junk", i, "spam", clock.t + i, False, os.urandom(100_000))
    state.trim_users(10)
    assert [p.uid for p in (state.get_pending("eve@example.test", "Junk", i) for i in range(30)) if p] == \
        list(range(20, 30))          # the newest 10 stay
    state.delete_pending([p.id for p in (state.get_pending("eve@example.test", "Junk", i) for i in range(20, 30))
                          if p])
    state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = state.path.stat().st_size
    state.vacuum()
    state.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert state.path.stat().st_size < before - 2_000_000   # the kept bytes went back to the disk


def test_user_set_opts_out_and_users_can_still_be_added(tmp_path: Path, mailsift_bin: str) -> None:
    import subprocess

    from mailsift.store.users import Users

    db = tmp_path / "users.db"
    users = Users(db)
    users.add("old@example.test", "pw-1")
    assert users.implicit_feedback("old@example.test")         # a database without the column: opted in

    def user(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([mailsift_bin, "user", "--users", str(db), "--mail-root", str(tmp_path / "mail"),
                               *args], input=stdin, capture_output=True, text=True, timeout=60)

    assert user("set", "old@example.test", "--no-implicit-feedback").returncode == 0
    assert not users.implicit_feedback("old@example.test")
    added = user("add", "new@example.test", "--stdin", stdin="pw-2\n")   # after the column was added
    assert added.returncode == 0, added.stderr
    assert users.implicit_feedback("new@example.test") and users.verify("new@example.test", "pw-2")
    assert user("set", "old@example.test", "--implicit-feedback").returncode == 0
    assert users.implicit_feedback("old@example.test")
    missing = user("set", "nobody@example.test", "--no-implicit-feedback")
    assert missing.returncode == 1 and "no user nobody@example.test" in missing.stderr
    assert user("set", "old@example.test").returncode == 2                  # say which


def test_a_newer_judgement_replaces_a_deferred_one(store, tmp_path: Path) -> None:
    model = tmp_path / "model"
    clock = Clock()
    fl = FeedbackLearner(store, model, save_interval=0.1, max_per_user_day=1, clock=clock,
                         sweep_interval=0.1).start()
    try:
        box = store.mailbox(USER)
        a, b = box.deliver(message(1)).uid, box.deliver(message(2)).uid
        box.move("INBOX", [a], "Junk")                       # today's one judgement
        assert fl.wait_idle()
        [(_, b_junk)] = box.move("INBOX", [b], "Junk")       # over the cap: deferred as spam
        assert fl.wait_idle()
        box.move("Junk", [b_junk], "INBOX")                  # changed her mind: deferred as ham instead
        assert fl.wait_idle()
        assert fl.state.summary(0)["deferred"] == {USER: 1}
        clock.t += DAY
        wait_for(lambda: fl.wait_idle(1) and fl.state.summary(0)["deferred"] == {}, timeout=30,
                 what="the deferred judgement learned the next day")
        with LearnRecord(model) as rec:
            assert rec.get(message_digest(message(2)))[0] == "ham"
            assert rec.counts() == {"ham": 1, "spam": 1}
        b_lines = [(j.label, j.outcome) for j in Spool(model).judgements() if j.digest == message_digest(message(2))]
        assert b_lines == [("spam", "deferred"), ("ham", "deferred"), ("ham", "learned")]
    finally:
        fl.stop()


def test_a_move_within_one_folder_files_nothing(store, tracked) -> None:
    """MOVE into the selected mailbox (RFC 6851) gives the message a new UID in the same folder:
    the user filed nothing, so the message waits as before, under its new UID."""
    tracker, clock = tracked
    box = store.mailbox(USER)
    uid = box.deliver(message(1)).uid
    [(_, moved)] = box.move("INBOX", [uid], "INBOX")
    assert due(tracker) == {}                      # not "filed into INBOX" at once
    box.store_flags("INBOX", [moved], {"\\Seen"}, "add")
    clock.t += 2 * DAY + 60
    assert due(tracker) == {("INBOX", moved): ("ham", "kept in INBOX 2d")}
