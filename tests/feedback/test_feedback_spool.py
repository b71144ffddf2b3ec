"""The feedback spool on disk: latest judgement wins, torn journal lines are skipped, bounded,
private; and retrain() from Maildir training folders into an empty model directory."""

from __future__ import annotations

import os
from pathlib import Path

from mailsift.feedback.retrain import retrain
from mailsift.feedback.spool import Judgement, Spool


def j(t: float, digest: str, label: str) -> Judgement:
    return Judgement(t, "u@example.test", digest, label, "test", "learned")


def test_latest_judgement_wins_and_torn_lines_are_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=10)
    spool.record([(j(1, "a" * 64, "spam"), b"Subject: a\n\nA\n"), (j(2, "b" * 64, "ham"), b"Subject: b\n\nB\n")])
    spool.record([(j(3, "a" * 64, "ham"), b"Subject: a\n\nA\n")])
    with open(spool.journal, "ab") as fh:
        fh.write(b'{"t": 4, "user": "u@example.test", "digest": "cc')   # a crash mid-line
    assert [(x.digest[0], x.label) for x in spool.current()] == [("b", "ham"), ("a", "ham")]
    assert len(spool.judgements()) == 3
    assert spool.read("a" * 64) == b"Subject: a\n\nA\n"
    assert oct(spool.dir.stat().st_mode & 0o777) == "0o700" and oct(spool.spool.stat().st_mode & 0o777) == "0o700"
    # a judgement without the message (bytes unknown) does not make it current
    spool.record([(j(5, "d" * 64, "spam"), None)])
    assert "d" * 64 not in {x.digest for x in spool.current()}


def test_bounded_to_the_most_recent(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=2)
    for i, label in enumerate(["spam", "ham", "spam", "ham"]):
        spool.record([(j(i, f"{i:064d}", label), f"Subject: {i}\n\n{i}\n".encode())])
    assert [x.digest for x in spool.current()] == [f"{2:064d}", f"{3:064d}"]
    assert sorted(os.listdir(spool.spool)) == [f"{2:064d}.eml", f"{3:064d}.eml"]
    assert Spool(tmp_path, max_messages=0).record([(j(9, "e" * 64, "spam"), b"x")]) == 0


def test_retrain_from_maildirs_into_an_empty_model_dir(tmp_path: Path, training_sets: dict[str, list[Path]]) -> None:
    folders = {}
    for label, files in training_sets.items():
        md = tmp_path / label
        for sub in ("cur", "new", "tmp"):
            (md / sub).mkdir(parents=True)
        for p in files:
            (md / "cur" / f"{p.name}:2,S").symlink_to(p)
        folders[label] = str(md)
    report = retrain(tmp_path / "model", ham=[folders["ham"]], spam=[folders["spam"]])
    assert report.decision == "swapped" and report.reason == "there was no live model"
    assert (report.folder_messages, report.new_ham, report.new_spam) == (400, 200, 200)
    from mailsift.classifier.api import load_model

    model = load_model(tmp_path / "model")
    assert model.ready() and (model.n_ham_, model.n_spam_) == (200, 200)
    assert not [p for p in (tmp_path / "model").iterdir() if p.name.startswith(".retrain-")]  # scratch removed


def test_oversized_messages_are_journalled_without_their_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_messages=10, max_message_bytes=100)
    spool.record([(j(1, "f" * 64, "spam"), b"Subject: big\n\n" + b"x" * 200),
                  (j(2, "9" * 64, "ham"), b"Subject: small\n\nok\n")])
    assert [x.label for x in spool.judgements()] == ["spam", "ham"]
    assert [x.digest for x in spool.current()] == ["9" * 64]
    assert spool.read("f" * 64) is None
