"""`mailsift retrain` as a user runs it (a subprocess through the `mailsift` command line): it
rebuilds a model from the feedback spool (filled by the real feedback learner on a real store)
and training folders, compares it with the live model on the most recent feedback, and swaps it
in only when it is not worse (--force, --dry-run)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mailsift.classifier.api import load_model
from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.feedback.learner import FeedbackLearner
from mailsift.feedback.spool import Spool

USER = "bob@example.test"
# `mailsift retrain` through the real command line; registers the subcommand if cli.py does not yet.
RUN = ("import sys; from mailsift import cli; "
       "cli.COMMANDS.setdefault('retrain', 'mailsift.feedback.cmd_retrain'); sys.exit(cli.main())")


def retrain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN, "retrain", *args], capture_output=True, text=True,
                          timeout=300)


def files_digest(model: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.bin", "model.json"):
        h.update((model / name).read_bytes())
    return h.hexdigest()


def link_dir(target: Path, files: list[Path]) -> Path:
    target.mkdir()
    for p in files:
        (target / p.name).symlink_to(p)
    return target


def give_feedback(store, model: Path, messages: dict[str, list[bytes]], n: int) -> list[tuple[str, bytes]]:
    """Users file n spam into Junk and rescue n ham from it, alternately (the real learner learns
    them into `model` and spools them). Returns (label, raw) in order."""
    box = store.mailbox(USER)
    fl = FeedbackLearner(store, model, save_interval=0.5).start()
    done = []
    try:
        for spam, ham in zip(messages["spam"][:n], messages["ham"][:n]):
            box.move("INBOX", [box.deliver(spam).uid], "Junk")
            box.move("Junk", [box.deliver(ham, folder="Junk").uid], "INBOX")
            done += [("spam", spam), ("ham", ham)]
        assert fl.wait_idle(120)
    finally:
        fl.stop()
    assert len(Spool(model).current()) == 2 * n
    return done


@pytest.fixture
def folders(tmp_path: Path, corpora: Path, training_sets: dict[str, list[Path]]) -> dict[str, Path]:
    return {"ham": link_dir(tmp_path / "ham", training_sets["ham"]),
            "spam": link_dir(tmp_path / "spam", training_sets["spam"])}


def test_swaps_a_better_model_in(tmp_path: Path, store, inverted_model_template: Path,
                                 folders: dict[str, Path], fresh_messages: dict[str, list[bytes]]) -> None:
    model = tmp_path / "model"
    shutil.copytree(inverted_model_template, model)          # a live model that has it backwards
    feedback = give_feedback(store, model, fresh_messages, 25)
    before = files_digest(model)

    dry = retrain("--dbpath", str(model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "dry-run: would swap" in dry.stdout and "nothing was changed" in dry.stdout
    assert files_digest(model) == before and not (model / "feedback" / "previous-model.npz").exists()

    out = retrain("--dbpath", str(model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]))
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    assert "feedback messages: 50 (10 most recent held out for evaluation)" in out.stdout
    assert "training folder messages: 400" in out.stdout
    assert "swapped: the new model is not worse" in out.stdout
    new_line = next(line for line in out.stdout.splitlines() if "new model 1-ROCA%" in line)
    live_line = next(line for line in out.stdout.splitlines() if "live model 1-ROCA%" in line)
    assert int(new_line.split("errors ")[1].split()[0]) < int(live_line.split("errors ")[1].split()[0])
    assert files_digest(model) != before
    new = load_model(model)
    assert (new.n_ham_, new.n_spam_) == (225, 225)
    # the learn record is exactly what the new model learned; the users' labels hold
    with LearnRecord(model) as rec:
        assert rec.counts() == {"ham": 225, "spam": 225}
        for label, raw in feedback:
            assert rec.get(message_digest(raw))[0] == label
    # the new model gets the feedback right; the old one is kept for `mailsift learn --restore`
    assert all(new.verdict(raw).label == label for label, raw in feedback)
    assert (model / "feedback" / "previous-model.npz").exists()


def test_refuses_a_worse_model_unless_forced(tmp_path: Path, store, good_model: Path,
                                             folders: dict[str, Path],
                                             fresh_messages: dict[str, list[bytes]]) -> None:
    give_feedback(store, good_model, fresh_messages, 25)
    before = files_digest(good_model)
    with LearnRecord(good_model) as rec:
        record_before = rec.counts()
    # training folders with the labels swapped: the rebuilt model is worse than the live one
    args = ["--dbpath", str(good_model), "--ham", str(folders["spam"]), "--spam", str(folders["ham"])]
    out = retrain(*args)
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    assert "kept: the new model is worse on the held-out feedback; the live model stays" in out.stdout
    assert files_digest(good_model) == before
    with LearnRecord(good_model) as rec:
        assert rec.counts() == record_before

    forced = retrain(*args, "--force")
    assert forced.returncode == 0, forced.stderr
    assert "swapped: forced" in forced.stdout
    assert files_digest(good_model) != before


def test_too_little_feedback_keeps_the_live_model(tmp_path: Path, store, good_model: Path,
                                                  folders: dict[str, Path],
                                                  fresh_messages: dict[str, list[bytes]]) -> None:
    give_feedback(store, good_model, fresh_messages, 3)
    before = files_digest(good_model)
    out = retrain("--dbpath", str(good_model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]))
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    assert "kept: too little feedback" in out.stdout and files_digest(good_model) == before


def test_nothing_to_train_from(tmp_path: Path) -> None:
    out = retrain("--dbpath", str(tmp_path / "empty"))
    assert out.returncode == 1
    assert "nothing to train from" in out.stderr
    bad = retrain("--dbpath", str(tmp_path / "empty"), "--holdout", "1.5")
    assert bad.returncode == 1 and "--holdout" in bad.stderr
