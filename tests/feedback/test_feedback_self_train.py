"""Self-training in the feedback learner (issue 12): on a real Store and a real model directory,
what LMTP delivered is learned with the model's own pseudo-labels, by its character member only,
in the batch of the next real judgement, and never without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mailsift.classifier.api import load_model
from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.feedback.learner import FeedbackLearner, start_learner
from mailsift.feedback.settings import FeedbackSettings

USER = "alice@example.test"


def _self_trained(model_dir: Path, messages: list[bytes]) -> list[int]:
    """The ham and spam pseudo-labels the model learns from these messages, in this order."""
    m = load_model(model_dir)
    for raw in messages:
        m.self_learn(raw, m.spamminess(raw))
    return m.chars.pseudo


def test_deliveries_are_pseudo_labelled_with_the_next_judgement(
        store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    ham, spam = fresh_messages["ham"][:8], fresh_messages["spam"][:6]
    expected = _self_trained(good_model, ham + spam[1:])
    assert expected[0] and expected[1], "the model is sure of no test message of a class: it tests nothing"
    before = load_model(good_model)
    fl = FeedbackLearner(store, good_model, save_interval=0.2, spool_max_messages=100, self_train=True).start()
    try:
        box = store.mailbox(USER)
        junked = box.deliver(spam[0]).uid      # the filter let it through; the user will junk it
        for raw in ham + spam[1:]:
            box.deliver(raw)
        for raw in ham:  # the same mail to a second user: learned once
            store.mailbox("bob@example.test").deliver(raw)
        assert fl.wait_idle() and fl.self_trained == 0 and fl.saves == 0  # deliveries alone: nothing
        box.move("INBOX", [junked], "Junk")
        assert fl.wait_idle()
    finally:
        fl.stop()
    assert fl.learned == 1 and fl.saves == 1
    # every sure one delivered before the judgement is pseudo-labelled, the judged one is not
    after = load_model(good_model)
    assert after.chars.pseudo == expected and fl.self_trained == sum(expected)
    assert after.chars.learned == before.chars.learned + 1 + fl.self_trained
    # NB and class counts, and the learn record, hold the real judgement only
    assert (after.n_ham_, after.n_spam_) == (before.n_ham_, before.n_spam_ + 1)
    with LearnRecord(good_model) as rec:
        assert rec.get(message_digest(spam[0]))[0] == "spam"  # type: ignore[index]
        assert all(rec.get(message_digest(raw)) is None for raw in ham + spam[1:])
    dump = subprocess.run([sys.executable, "-m", "mailsift", "learn", "--dump", "--dbpath", str(good_model)],
                          capture_output=True, text=True, check=True, timeout=120).stdout
    assert f"self-training: on, {expected[0]} ham and {expected[1]} spam pseudo-labels learned so far" in dump


def test_off_learns_no_pseudo_labels(store, good_model: Path, fresh_messages: dict[str, list[bytes]]) -> None:
    handle = start_learner(store, FeedbackSettings(save_interval=0.2, implicit=False, self_train=False),
                           str(good_model))
    assert isinstance(handle, FeedbackLearner) and not handle.self_train
    try:
        box = store.mailbox(USER)
        junked = box.deliver(fresh_messages["spam"][0]).uid
        for raw in fresh_messages["ham"][:8]:
            box.deliver(raw)
        box.move("INBOX", [junked], "Junk")
        assert handle.wait_idle()
    finally:
        handle.stop()
    assert handle.learned == 1 and handle.self_trained == 0
    assert load_model(good_model).chars.pseudo == [0, 0]
    # on by default, and never with a shared model (its other hosts would not see the pseudo-labels)
    assert FeedbackSettings().self_train
