"""The feedback learner on a real Store (temp mail root) and a real model directory trained
from the corpora: what users file into and out of Junk changes the learn record, the model's
counts and the model file on disk, within the save interval."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest
from harness.procs import wait_for

from mailsift.classifier.api import load_model
from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.feedback.learner import FeedbackLearner, start_learner
from mailsift.feedback.settings import FeedbackSettings
from mailsift.milter.reload import ModelHolder
from mailsift.feedback.spool import Spool

USER = "alice@example.test"
SAVE_INTERVAL = 1.0


def counts(model: Path) -> tuple[int, int]:
    m = load_model(model)
    return m.n_ham_, m.n_spam_


def recorded(model: Path, raw: bytes) -> str | None:
    with LearnRecord(model) as rec:
        known = rec.get(message_digest(raw))
    return known[0] if known else None


def sidecar_stamp(model: Path) -> tuple[int, int]:
    st = (model / "model.json").stat()
    return st.st_ino, st.st_mtime_ns


@pytest.fixture
def learner(store, good_model: Path) -> Iterator[FeedbackLearner]:
    fl = FeedbackLearner(store, good_model, save_interval=SAVE_INTERVAL, spool_max_messages=100).start()
    yield fl
    fl.stop()


def test_move_into_junk_learns_spam_and_out_learns_ham(store, good_model: Path, learner: FeedbackLearner,
                                                       fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    raw = fresh_messages["spam"][0]
    uid = box.deliver(raw).uid                         # the filter let it into INBOX: nothing learned
    assert learner.wait_idle() and recorded(good_model, raw) is None
    ham0, spam0 = counts(good_model)
    before = sidecar_stamp(good_model)
    milter_view = ModelHolder(good_model)  # what the milter uses to notice a new model file
    milter_view.check()

    t0 = time.monotonic()
    [(_, junk_uid)] = box.move("INBOX", [uid], "Junk")
    # the model file the milter watches is replaced within the save interval (plus the learning itself)
    wait_for(lambda: sidecar_stamp(good_model) != before, timeout=SAVE_INTERVAL + 20, what="model saved")
    elapsed = time.monotonic() - t0
    assert elapsed < SAVE_INTERVAL + 20
    assert learner.wait_idle()
    assert milter_view.check()  # the milter would load the new model
    assert recorded(good_model, raw) == "spam"
    assert counts(good_model) == (ham0, spam0 + 1)

    # rescued from Junk: the same message flips to ham
    box.move("Junk", [junk_uid], "INBOX")
    assert learner.wait_idle()
    assert recorded(good_model, raw) == "ham"
    assert counts(good_model) == (ham0 + 1, spam0)
    assert (learner.learned, learner.moved, learner.skipped) == (2, 1, 0)

    # both judgements are journalled, the message is in the spool once, the latest label counts
    spool = Spool(good_model)
    assert [(j.label, j.outcome, j.user) for j in spool.judgements()] == [("spam", "learned", USER),
                                                                          ("ham", "moved", USER)]
    [current] = spool.current()
    assert current.label == "ham" and spool.read(current.digest) == box.read("INBOX", box.uids("INBOX")[-1], crlf=False)
    assert oct(spool.path_of(current.digest).stat().st_mode & 0o777) == "0o600"


def test_second_move_of_the_same_message_is_a_no_op(store, good_model: Path, learner: FeedbackLearner,
                                                    fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    raw = fresh_messages["spam"][1]
    first, second = box.deliver(raw).uid, box.deliver(raw).uid   # two deliveries, one message
    ham0, spam0 = counts(good_model)
    box.move("INBOX", [first], "Junk")
    assert learner.wait_idle()
    assert counts(good_model) == (ham0, spam0 + 1) and learner.saves == 1
    stamp = sidecar_stamp(good_model)
    box.copy("INBOX", [second], "Junk")                           # COPY (+ EXPUNGE) of the same message
    box.store_flags("INBOX", [second], ["\\Deleted"])
    box.expunge("INBOX")
    assert learner.wait_idle()
    assert counts(good_model) == (ham0, spam0 + 1)
    assert learner.skipped == 1 and learner.saves == 1            # nothing learned, the model not rewritten
    assert sidecar_stamp(good_model) == stamp
    assert [j.outcome for j in Spool(good_model).judgements()] == ["learned", "skipped"]


def test_junk_to_trash_and_lmtp_delivery_into_junk_learn_nothing(
        store, good_model: Path, learner: FeedbackLearner, fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    before = (counts(good_model), sidecar_stamp(good_model))
    uids = [box.deliver(raw, folder="Junk").uid for raw in fresh_messages["spam"][2:4]]  # the filter's verdict
    box.deliver(fresh_messages["ham"][0], folder="Junk")                                # even when it is wrong
    box.move("Junk", uids, "Trash")                                                     # thrown away
    assert learner.wait_idle()
    assert (counts(good_model), sidecar_stamp(good_model)) == before
    for raw in fresh_messages["spam"][2:4] + fresh_messages["ham"][:1]:
        assert recorded(good_model, raw) is None
    assert Spool(good_model).judgements() == [] and learner.learned == learner.skipped == 0


def test_keywords_learn_and_flip(store, good_model: Path, learner: FeedbackLearner,
                                 fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    spam, ham = fresh_messages["spam"][4], fresh_messages["ham"][1]
    s_uid, h_uid = box.deliver(spam).uid, box.deliver(ham, folder="Junk").uid
    ham0, spam0 = counts(good_model)
    box.store_flags("INBOX", [s_uid], ["$Junk"])
    box.store_flags("Junk", [h_uid], ["NonJunk"])
    assert learner.wait_idle()
    assert (recorded(good_model, spam), recorded(good_model, ham)) == ("spam", "ham")
    assert counts(good_model) == (ham0 + 1, spam0 + 1)
    # the user changes their mind (Thunderbird: "Junk" keyword)
    box.store_flags("INBOX", [s_uid], ["$Junk"], "remove")
    box.store_flags("INBOX", [s_uid], ["Junk"])            # still spam: no-op
    box.store_flags("INBOX", [s_uid], ["$NonJunk"])        # now ham
    assert learner.wait_idle()
    assert recorded(good_model, spam) == "ham"
    assert counts(good_model) == (ham0 + 2, spam0)


def test_append_into_junk_and_copy_out_of_junk(store, good_model: Path, learner: FeedbackLearner,
                                               fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    spam, ham = fresh_messages["spam"][5], fresh_messages["ham"][2]
    box.append("Junk", spam)
    h_uid = box.deliver(ham, folder="Junk").uid
    box.copy("Junk", [h_uid], "Archive") if box.find_folder("Archive") else (box.create_folder("Archive"),
                                                                             box.copy("Junk", [h_uid], "Archive"))
    assert learner.wait_idle()
    assert (recorded(good_model, spam), recorded(good_model, ham)) == ("spam", "ham")


def test_latest_judgement_in_one_batch_wins_and_gone_messages_are_skipped(
        store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    raw, gone, trashed = fresh_messages["spam"][6], fresh_messages["spam"][7], fresh_messages["spam"][16]
    uid, gone_uid, t_uid = box.deliver(raw).uid, box.deliver(gone).uid, box.deliver(trashed).uid
    fl = FeedbackLearner(store, good_model, save_interval=3.0).start()
    try:
        [(_, j)] = box.move("INBOX", [uid], "Junk")
        box.move("Junk", [j], "INBOX")                       # within the same interval: ham wins
        [(_, t)] = box.move("INBOX", [t_uid], "Junk")        # marked junk, then thrown away at once:
        box.move("Junk", [t], "Trash")                       # read in Trash, still learned as spam
        [(_, g)] = box.move("INBOX", [gone_uid], "Junk")
        box.store_flags("Junk", [g], ["\\Deleted"])
        box.expunge("Junk")                                  # gone before the worker reads it
        assert fl.wait_idle()
    finally:
        fl.stop()
    assert recorded(good_model, raw) == "ham" and recorded(good_model, gone) is None
    assert recorded(good_model, trashed) == "spam"
    assert fl.missing == 1 and fl.saves == 1 and fl.moved == 0


def test_mailsift_learn_meanwhile_is_not_overwritten(store, good_model: Path, learner: FeedbackLearner,
                                                     fresh_messages: dict[str, list[bytes]],
                                                     mailsift_bin: str, tmp_path: Path) -> None:
    box = store.mailbox(USER)
    box.move("INBOX", [box.deliver(fresh_messages["spam"][8]).uid], "Junk")
    assert learner.wait_idle()
    ham0, spam0 = counts(good_model)
    extra = tmp_path / "extra-ham"
    extra.mkdir()
    for i, raw in enumerate(fresh_messages["ham"][10:15]):
        (extra / f"m{i}").write_bytes(raw)
    out = subprocess.run([mailsift_bin, "learn", "--ham", "--dbpath", str(good_model), str(extra)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    box.move("INBOX", [box.deliver(fresh_messages["spam"][9]).uid], "Junk")
    assert learner.wait_idle()
    assert counts(good_model) == (ham0 + 5, spam0 + 1)      # both the learn run and the learner's batch
    assert recorded(good_model, fresh_messages["ham"][10]) == "ham"


def test_spool_is_bounded(store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    box = store.mailbox(USER)
    fl = FeedbackLearner(store, good_model, save_interval=0.2, spool_max_messages=3).start()
    try:
        for raw in fresh_messages["spam"][10:15]:
            box.move("INBOX", [box.deliver(raw).uid], "Junk")
            assert fl.wait_idle()
    finally:
        fl.stop()
    spool = Spool(good_model, 3)
    kept = spool.current()
    assert [spool.read(j.digest) is not None for j in kept] == [True] * 3
    assert {j.digest for j in kept} == {message_digest(r) for r in fresh_messages["spam"][12:15]}
    assert len(os.listdir(spool.spool)) == 3
    assert all(json.loads(line)["digest"] in {j.digest for j in kept}
               for line in spool.journal.read_text().splitlines())


def test_start_learner_follows_settings(store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    off = start_learner(store, FeedbackSettings(enabled=False), str(good_model))
    box = store.mailbox(USER)
    raw = fresh_messages["spam"][20]
    box.move("INBOX", [box.deliver(raw).uid], "Junk")
    off.stop()
    assert recorded(good_model, raw) is None
    on = start_learner(store, FeedbackSettings(save_interval=0.1), str(good_model))
    assert isinstance(on, FeedbackLearner) and on.dbpath == good_model
    raw2 = fresh_messages["spam"][21]
    box.move("INBOX", [box.deliver(raw2).uid], "Junk")
    on.stop()                                 # stop learns what is queued
    assert recorded(good_model, raw2) == "spam"
    with pytest.raises(ValueError):
        FeedbackSettings(save_interval=90).validate()


def test_unusable_model_keeps_the_judgement_for_retrain(store, good_model: Path,
                                                        fresh_messages: dict[str, list[bytes]]) -> None:
    (good_model / "model.bin").write_bytes(b"not a model")   # corrupt: refused, never used
    box = store.mailbox(USER)
    fl = FeedbackLearner(store, good_model, save_interval=0.1).start()
    try:
        raw = fresh_messages["spam"][22]
        box.move("INBOX", [box.deliver(raw).uid], "Junk")
        assert fl.wait_idle()
    finally:
        fl.stop()
    assert fl.failed == 1 and fl.saves == 0
    [j] = Spool(good_model).current()
    assert (j.label, j.outcome, j.digest) == ("spam", "not-learned", message_digest(raw))
    assert (good_model / "model.bin").read_bytes() == b"not a model"


def test_the_milters_live_model_reflects_a_move_within_a_minute(
        store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    """With the default settings, the milter's own model watcher (mailsift.milter.reload) holds a
    model that has learned the move well within a minute."""
    holder = ModelHolder(good_model, interval=0.5).start()
    fl = start_learner(store, FeedbackSettings(), str(good_model))
    try:
        n_spam = holder.current()[0].n_spam_
        box = store.mailbox(USER)
        raw = fresh_messages["spam"][23]
        uid = box.deliver(raw).uid
        t0 = time.monotonic()
        box.move("INBOX", [uid], "Junk")
        wait_for(lambda: holder.current()[0] is not None and holder.current()[0].n_spam_ == n_spam + 1,
                 timeout=60, what="the milter's model reloaded with the learned message")
        assert time.monotonic() - t0 < 60
    finally:
        fl.stop()
        holder.stop()
