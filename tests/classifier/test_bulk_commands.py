"""`mailsift learn` and `classify` over many messages: worker processes tokenise, the model is
written once per run, and every route gives the same verdicts."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from mailsift.classifier.learn import Learner
from mailsift.classifier.record import LearnRecord


def _paths(corpora: Path, folder: str, n: int, skip: int = 0) -> list[Path]:
    return sorted(p for p in (corpora / folder).iterdir() if p.is_file())[skip:skip + n]


def run(bin_: str, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([bin_, *args], capture_output=True, timeout=600)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def _learn(db: Path, items: list[tuple[str, bytes | None, str]], jobs: int) -> Learner:
    with Learner(db, source=None) as learner:
        stats = learner.learn_labelled(iter(items), jobs=jobs)
        learner.save()
    assert (stats.learned, stats.skipped, len(stats.unreadable)) == (300, 2, 1)
    return learner


def test_learning_in_workers_is_learning_here(tmp_path: Path, corpora: Path) -> None:
    """Tokenised in 2 worker processes or in this one: the same model and learn record (the
    messages are learned here, in order: a message met again in the same run is skipped)."""
    ham = [p.read_bytes() for p in _paths(corpora, "spamassassin/easy_ham", 150)]
    spam = [p.read_bytes() for p in _paths(corpora, "spamassassin/spam_2", 150)]
    items: list[tuple[str, bytes | None, str]] = []
    for h, s in zip(ham, spam):
        items += [("h", h, "ham"), ("s", s, "spam")]
    items += [("dup", ham[3], "ham"), ("moved", spam[5], "ham"), ("bad", None, "ham")]
    models = []
    for jobs in (1, 2):
        db = tmp_path / f"j{jobs}"
        _learn(db, items, jobs)
        from mailsift.classifier.persist import load_model

        models.append(load_model(db))
        with LearnRecord(db) as record:
            models[-1].rows = sorted((d, label) for d, label, _ in record.rows())  # type: ignore[attr-defined]
    one, two = models
    for a in ("feature_count", "class_count", "lr_coef"):
        assert np.array_equal(getattr(one, a), getattr(two, a)), a
    assert np.array_equal(one.chars.coef, two.chars.coef)
    # all the rest the model file holds too: rehearsal buffers, AdaGrad sums, intercepts, RNGs
    from mailsift.classifier.persist import _encode

    (head1, arrays1, _), (head2, arrays2, _) = _encode(one), _encode(two)
    for head in (head1, head2):
        del head["model_id"], head["changed_at"]
    assert head1 == head2
    assert arrays1.keys() == arrays2.keys()
    for name in arrays1:
        assert arrays1[name].dtype == arrays2[name].dtype and np.array_equal(arrays1[name], arrays2[name]), name
    assert one.rows == two.rows and len(one.rows) == 300  # type: ignore[attr-defined]
    assert (one.n_ham_, one.n_spam_) == (150, 150)


@pytest.fixture(scope="module")
def bulk(tmp_path_factory: pytest.TempPathFactory, corpora: Path, mailsift_bin: str) -> dict[str, object]:
    """A model learned by one `mailsift learn` run per folder, in worker processes."""
    root = tmp_path_factory.mktemp("bulk")
    dirs = {}
    for name, folder, n in (("ham", "spamassassin/easy_ham", 300), ("spam", "spamassassin/spam_2", 300)):
        d = root / name
        d.mkdir()
        for p in _paths(corpora, folder, n):
            os.symlink(p, d / p.name)
        dirs[name] = d
    db = root / "models"
    for label in ("spam", "ham"):
        p = run(mailsift_bin, "learn", f"--{label}", "--jobs", "2", "--dbpath", str(db), str(dirs[label]))
        assert f"Learned 300 message(s) as {label}" in p.stdout.decode()
    tests = [str(p) for p in _paths(corpora, "spamassassin/easy_ham_2", 50) + _paths(corpora, "spamassassin/spam", 50)]
    return {"db": db, "tests": tests, "dirs": dirs}


def test_one_learn_run_writes_the_model_once(bulk: dict[str, object]) -> None:
    """300 messages (more than one learning batch of 256) per run: one save per run, so the
    model history holds one version per run."""
    db = bulk["db"]
    assert isinstance(db, Path)
    versions = sorted(os.listdir(db / "versions"))
    assert len(versions) == 2, versions
    assert [json.loads((db / "versions" / v / "version.json").read_text())["generation"] for v in versions] == [1, 2]


def test_learn_with_workers_writes_the_model_one_process_writes(bulk: dict[str, object], mailsift_bin: str,
                                                                tmp_path: Path) -> None:
    """`mailsift learn --jobs 2` (the fixture's runs) and `--jobs 1` over the same folders save
    the same model: every section of model.bin and every header field but the file's id and
    the time of the last change."""
    from mailsift.classifier import modelfile

    dirs = bulk["dirs"]
    assert isinstance(dirs, dict)
    db = tmp_path / "serial"
    for label in ("spam", "ham"):
        run(mailsift_bin, "learn", f"--{label}", "--jobs", "1", "--dbpath", str(db), str(dirs[label]))

    def contents(d: object) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        data = (Path(str(d)) / "model.bin").read_bytes()
        head = modelfile.read_header(data, len(data))
        arrays = modelfile.arrays(data, head)
        for name in ("model_id", "changed_at", "sections"):
            del head[name]
        return head, arrays

    (head2, arrays2), (head1, arrays1) = contents(bulk["db"]), contents(db)
    assert head1 == head2
    assert arrays1.keys() == arrays2.keys()
    for name in arrays1:
        assert arrays1[name].dtype == arrays2[name].dtype and np.array_equal(arrays1[name], arrays2[name]), name


def test_bulk_classify_gives_the_one_message_verdicts(bulk: dict[str, object], mailsift_bin: str) -> None:
    """Classifying 100 files at once (the full model in 2 workers, or in this process) prints
    what classifying each alone (the numpy-free scorer) prints."""
    db, tests = bulk["db"], bulk["tests"]
    assert isinstance(tests, list)
    many = run(mailsift_bin, "classify", "--jobs", "2", "--dbpath", str(db), *tests, check=None)
    serial = run(mailsift_bin, "classify", "--jobs", "1", "--dbpath", str(db), *tests, check=None)
    assert many.returncode == serial.returncode == 0  # some spam among them
    lines = many.stdout.decode().splitlines()
    assert lines == serial.stdout.decode().splitlines() and len(lines) == 100
    assert {line.split("\t")[1] for line in lines} >= {"spam", "ham"}
    for name in tests[::10]:  # one process per message
        alone = run(mailsift_bin, "classify", "--dbpath", str(db), name, check=None)
        assert alone.stdout.decode().splitlines() == [line for line in lines if line.split("\t")[0] == name]


def test_classify_takes_mboxes_maildirs_and_directories(bulk: dict[str, object], mailsift_bin: str,
                                                        tmp_path: Path) -> None:
    """As `mailsift learn` takes them: an mbox (in workers), a Maildir and a directory (here),
    each message with the verdict it gets as a file of its own."""
    import mailbox

    from mailsift.classifier.scorer import load_scorer

    db, tests = bulk["db"], bulk["tests"]
    assert isinstance(tests, list) and isinstance(db, Path)
    raws = [Path(t).read_bytes() for t in tests[:70]]
    box = mailbox.mbox(str(tmp_path / "in.mbox"))
    for raw in raws:
        box.add(raw)
    box.close()
    md = mailbox.Maildir(str(tmp_path / "md"))
    for raw in raws[:5]:
        md.add(raw)
    (tmp_path / "dir").mkdir()
    for i, raw in enumerate(raws[5:9]):
        (tmp_path / "dir" / f"{i}.eml").write_bytes(raw)
    scorer = load_scorer(db)
    assert scorer is not None

    def expected(raw: bytes) -> tuple[str, str]:
        v = scorer.verdict(raw)
        return v.label, f"{v.probability:.6f}"

    p = run(mailsift_bin, "classify", "--mbox", "--jobs", "2", "--dbpath", str(db), str(tmp_path / "in.mbox"),
            check=None)
    lines = [line.split("\t") for line in p.stdout.decode().splitlines()]
    assert [name for name, *_ in lines] == [f"{tmp_path / 'in.mbox'}#{n}" for n in range(1, 71)]
    box = mailbox.mbox(str(tmp_path / "in.mbox"))
    got = [bytes(box.get_bytes(k)) for k in box.keys()]
    assert [(label, prob) for _, label, prob, _ in lines] == [expected(raw) for raw in got]
    for args in (["--maildir", str(tmp_path / "md")], [str(tmp_path / "dir")]):
        p = run(mailsift_bin, "classify", "--dbpath", str(db), *args, check=None)
        lines = [line.split("\t") for line in p.stdout.decode().splitlines()]
        assert len(lines) == (5 if "--maildir" in args else 4) and p.returncode in (0, 1, 2)
        for name, label, prob, _ in lines:
            assert (label, prob) == expected(Path(name).read_bytes())
    assert run(mailsift_bin, "classify", "-p", "--dbpath", str(db), str(tmp_path / "dir"), check=3).stderr \
        .startswith(b"mailsift classify: -p takes exactly one message")
