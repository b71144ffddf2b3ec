"""The implicit tracker's batching, on a real Store (temp mail root) and a real state file: what
it skips cannot matter, a batch is one transaction, a stop records what waits for the tracker,
and the backlog is bounded."""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from mailsift.feedback import learner as learner_mod
from mailsift.feedback.implicit import ImplicitTracker
from mailsift.feedback.learner import FeedbackLearner
from mailsift.feedback.state import State
from mailsift.store.events import Event

USER = "tess@example.test"
DAY = 86400.0


def message(n: int) -> bytes:
    return (f"From: a{n}@example.net\nSubject: note {n}\nMessage-ID: <batch-{n}@example.net>\n\n"
            f"text of note {n} word{n}\n").encode()


def pending_rows(model: Path) -> list[tuple]:
    path = model / "feedback" / "state.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT user, folder, uid, label, seen, reason, raw IS NOT NULL FROM pending "
                          "ORDER BY folder, uid").fetchall()
    finally:
        db.close()


FLAG_NAMES = ("\\Seen", "\\Answered", "\\Deleted", "\\Flagged", "\\Draft", "$Junk", "$NonJunk", "Junk",
              "NonJunk", "$label1", "$Forwarded")


def candidate_events() -> list[Event]:
    """Changes of every kind, by every path, to messages that are pending."""
    out: list[Event] = []
    sets = [frozenset()] + [frozenset({f}) for f in FLAG_NAMES] + \
        [frozenset(p) for p in itertools.combinations(FLAG_NAMES, 2)]
    for folder, special in (("INBOX", None), ("Junk", "\\Junk")):
        for via in ("store", "sync", "append", "expunge", ""):
            for added, removed in itertools.product(sets, [frozenset(), frozenset({"\\Seen"}),
                                                           frozenset({"\\Deleted"})]):
                if added & removed:
                    continue
                out.append(Event(USER, "flags", folder, special, 1, 5, added | {"\\Recent"}, added, removed, via))
        for via in ("expunge", "move", "sync"):
            out.append(Event(USER, "expunge", folder, special, 1, 5, via=via))
    for via in ("deliver", "append", "copy", "move", "sync"):
        for folder, special in (("INBOX", None), ("Work", None), ("Junk", "\\Junk"), ("Trash", "\\Trash"),
                                ("Sent", "\\Sent"), ("Archive", "\\Archive"), ("Quarantine", None)):
            for source in (("INBOX", None), ("Junk", "\\Junk")):
                out.append(Event(USER, "new", folder, special, 1, 9, frozenset({"\\Seen"}), via=via,
                                 source_folder=source[0], source_special_use=source[1], source_uid=5))
    out.append(Event(USER, "flags", "INBOX", None, 1, None, frozenset({"\\Seen"}), frozenset({"\\Seen"}), via="store"))
    out += [Event(USER, "folder-created", "Work"), Event(USER, "folder-deleted", "Work"),
            Event(USER, "folder-renamed", "Work2", old_name="Work")]
    return out


def test_what_the_tracker_skips_changes_nothing_it_records(store, tmp_path: Path) -> None:
    """Every change `wants` turns away, handed to the tracker anyway, leaves its state as it was,
    with pending ham and spam, read and unread, in the folders it names."""
    state = State(tmp_path / "model")
    tracker = ImplicitTracker(store, state, lambda: 1_800_000_000.0, 2 * DAY)
    skipped = [ev for ev in candidate_events() if not tracker.wants(ev)]
    # what is skipped: flags other than \Seen, \Answered and the verdict keywords, changes by
    # other paths than a user's STORE or another program, a move's expunge, new mail by sync
    kinds = {(ev.kind, ev.via) for ev in skipped}
    assert ("flags", "store") in kinds and ("flags", "sync") in kinds and ("expunge", "move") in kinds
    assert ("new", "sync") in kinds and ("folder-created", "") in kinds
    assert not any(tracker.wants(ev) for ev in skipped)
    assert tracker.wants(Event(USER, "flags", "INBOX", None, 1, 5, frozenset({"\\Seen"}),
                               frozenset({"\\Seen"}), via="store"))
    assert not tracker.wants(Event(USER, "flags", "INBOX", None, 1, 5, frozenset({"\\Seen", "\\Deleted"}),
                                   frozenset({"\\Deleted"}), via="store"))
    for ev in skipped:
        state.db.execute("DELETE FROM pending")
        for folder in ("INBOX", "Junk", "Work"):
            for seen in (False, True):
                uid = 5 if not seen else 6
                state.add_pending(USER, folder, uid, "spam" if folder == "Junk" else "ham", 1.0, seen,
                                  b"x" if folder == "Junk" else None)
        before = state.db.execute("SELECT * FROM pending ORDER BY id").fetchall()
        for uid in (5, 6):
            tracker.on_event(Event(**{**ev.__dict__, "uid": uid if ev.uid is not None else None,
                                      "source_uid": uid if ev.source_uid is not None else None}))
        assert state.db.execute("SELECT * FROM pending ORDER BY id").fetchall() == before, ev
    state.close()


def test_a_batch_is_one_transaction_rolled_back_on_error(tmp_path: Path) -> None:
    model = tmp_path / "model"
    state = State(model)
    with state.batch():
        assert not state.ready()                 # nothing done: nothing created
    assert not (model / "feedback").exists()
    with state.batch():
        state.add_pending(USER, "INBOX", 1, "ham", 1.0, False)
        state.add_pending(USER, "INBOX", 2, "ham", 1.0, False)
        assert pending_rows(model) == []         # another connection sees nothing yet
        with state.batch():                      # nested: part of the outer one
            state.set_seen(state.get_pending(USER, "INBOX", 1).id, True)
        assert pending_rows(model) == []
    assert [r[:5] for r in pending_rows(model)] == [(USER, "INBOX", 1, "ham", 1), (USER, "INBOX", 2, "ham", 0)]
    with pytest.raises(RuntimeError), state.batch():
        state.delete_pending([state.get_pending(USER, "INBOX", 1).id])
        raise RuntimeError("boom")
    assert len(pending_rows(model)) == 2          # rolled back
    state.add_pending(USER, "INBOX", 3, "ham", 1.0, False)   # outside a batch: committed at once
    assert len(pending_rows(model)) == 3
    state.close()


def test_changes_wait_for_the_batch_and_a_stop_records_them(store, tmp_path: Path) -> None:
    model = tmp_path / "model"
    fl = FeedbackLearner(store, model, confirm_after=2 * DAY, clock=lambda: 1_800_000_000.0,
                         sweep_interval=3600.0, track_delay=60.0).start()
    stopped = False
    try:
        box = store.mailbox(USER)
        read = box.deliver(message(1)).uid
        box.store_flags("INBOX", [read], {"\\Seen"}, "add")
        box.store_flags("INBOX", [read], {"\\Flagged"}, "add")
        unread = box.deliver(message(2)).uid
        junk = box.deliver(message(3), folder="Junk").uid
        gone = box.deliver(message(4)).uid
        box.store_flags("INBOX", [gone], {"\\Deleted"}, "add")
        box.expunge("INBOX")
        assert not fl.wait_idle(0.5)             # gathered for the batch, not recorded yet
        assert pending_rows(model) == []
        t0 = time.monotonic()
        fl.stop()
        stopped = True
        assert time.monotonic() - t0 < 20        # the stop ends the wait for the batch
        assert pending_rows(model) == [(USER, "INBOX", read, "ham", 1, None, 0),
                                       (USER, "INBOX", unread, "ham", 0, None, 0),
                                       (USER, "Junk", junk, "spam", 0, None, 1)]
    finally:
        if not stopped:
            fl.stop()


def test_the_backlog_is_bounded(store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(learner_mod, "MAX_TRACK_BACKLOG", 3)
    model = tmp_path / "model"
    fl = FeedbackLearner(store, model, confirm_after=2 * DAY, clock=lambda: 1_800_000_000.0,
                         sweep_interval=3600.0, track_delay=60.0).start()
    try:
        box = store.mailbox(USER)
        with caplog.at_level(logging.WARNING, logger="mailsift.feedback"):
            uids = [box.deliver(message(i)).uid for i in range(5)]
        assert fl._track_dropped == 2
        assert "3 change(s) waiting to be tracked; 1 dropped so far" in caplog.text
    finally:
        fl.stop()
    assert [r[2] for r in pending_rows(model)] == uids[:3]
