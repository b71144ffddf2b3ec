"""Learning from what users file: the decision per store event, and a JunkLearner on a real
store and a real classifier model directory (the learn record's counts change, idempotently)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from mailsift.protocols.imap.junklearn import JunkLearner, decide
from mailsift.store.api import Store
from mailsift.store.events import Event


def ev(**kw) -> Event:
    base = dict(user="u@example.test", kind="new", folder="Junk", special_use="\\Junk", uid=1, via="move")
    base.update(kw)
    return Event(**base)


@pytest.mark.parametrize("event,label", [
    (ev(via="move", source_folder="INBOX", source_special_use=None), "spam"),
    (ev(via="copy", source_folder="INBOX", source_special_use=None), "spam"),
    (ev(via="append"), "spam"),
    (ev(via="deliver"), None),                     # the milter's own filing is not learned
    (ev(via="sync"), None),                        # outside programs: unknown intent
    (ev(folder="INBOX", special_use=None, via="move", source_special_use="\\Junk"), "ham"),
    (ev(folder="Archive", special_use=None, via="copy", source_special_use="\\Junk"), "ham"),
    (ev(folder="Trash", special_use="\\Trash", via="move", source_special_use="\\Junk"), None),
    (ev(folder="INBOX", special_use=None, via="move", source_special_use=None), None),
    (ev(kind="flags", folder="INBOX", special_use=None, added=frozenset({"$Junk"})), "spam"),
    (ev(kind="flags", folder="INBOX", special_use=None, added=frozenset({"NonJunk"})), "ham"),
    (ev(kind="flags", folder="INBOX", special_use=None, added=frozenset({"\\Seen"})), None),
    (ev(kind="expunge"), None),
    (ev(kind="folder-created", uid=None), None),
])
def test_decide(event: Event, label: str | None) -> None:
    assert decide(event) == label


@pytest.fixture
def setup(corpora: Path):
    d = Path(tempfile.mkdtemp(prefix="junklearn-"))
    store = Store(d / "mail")
    learner = JunkLearner(store, d / "model", delay=0.2).start()
    box = store.mailbox("u@example.test")
    spam = sorted((corpora / "spamassassin" / "spam").iterdir())[:3]
    ham = sorted((corpora / "spamassassin" / "easy_ham").iterdir())[:3]
    yield store, box, learner, d / "model", [p.read_bytes() for p in spam], [p.read_bytes() for p in ham]
    learner.stop()
    store.close()
    shutil.rmtree(d, ignore_errors=True)


def counts(model: Path) -> dict[str, int]:
    from mailsift.classifier.record import LearnRecord
    with LearnRecord(model) as rec:
        return rec.counts()


def test_moves_copies_and_keywords_train_the_model(setup) -> None:
    store, box, learner, model, spam, ham = setup
    s_uids = [box.deliver(m).uid for m in spam]           # filed in INBOX: nothing learned
    h_uids = [box.deliver(m, folder="Junk").uid for m in ham]  # the milter got these wrong
    assert learner.wait_idle() and not model.joinpath("learned.sqlite").exists()
    box.move("INBOX", [s_uids[0]], "Junk")                # MOVE into Junk -> spam
    box.copy("INBOX", [s_uids[1]], "Junk")                # COPY (+ EXPUNGE) into Junk -> spam
    box.move("Junk", [h_uids[0]], "INBOX")                # rescued -> ham
    box.move("Junk", [h_uids[1]], "Trash")                # thrown away -> nothing
    box.store_flags("INBOX", [s_uids[2]], ["$Junk"])      # keyword -> spam
    assert learner.wait_idle()
    assert counts(model) == {"spam": 3, "ham": 1}
    assert learner.learned == 4
    # the same message filed again is not learned twice; the other way round it moves
    box.store_flags("INBOX", [s_uids[2]], ["$Junk"], "remove")
    box.store_flags("INBOX", [s_uids[2]], ["$Junk"])
    assert learner.wait_idle()
    assert counts(model) == {"spam": 3, "ham": 1} and learner.skipped >= 1
    box.store_flags("INBOX", [s_uids[2]], ["$NonJunk"])
    assert learner.wait_idle()
    assert counts(model) == {"spam": 2, "ham": 2}
    from mailsift.classifier.learn import has_model
    assert has_model(model)  # the model the milter loads was saved


def test_a_message_gone_before_learning_is_skipped(setup) -> None:
    store, box, learner, model, spam, ham = setup
    uid = box.deliver(spam[0]).uid
    learner.stop()                      # nothing is consumed while stopped...
    learner2 = JunkLearner(store, model, delay=0.2)
    learner2._on_event(ev(user="u@example.test", folder="INBOX", uid=uid + 100, via="move"))  # no such message
    learner2.start()
    assert learner2.wait_idle()
    learner2.stop()
    assert learner2.failed == 1 and learner2.learned == 0
