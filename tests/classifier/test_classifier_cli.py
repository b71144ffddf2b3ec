"""`mailsift learn` and `mailsift classify` as a user runs them (subprocess)."""

from __future__ import annotations

import mailbox
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "classifier" / "samples"
N = 220  # per class: past the 200/200 the model needs before it decides


def sh(bin_: str, *args: str, stdin: bytes | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([bin_, *args], input=stdin, capture_output=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode()


def dump(bin_: str, db: Path) -> dict[str, str]:
    text = out(sh(bin_, "learn", "--dump", "--dbpath", str(db)))
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> dict[str, Path]:
    """Small training folders (symlinks into the corpora) and held-out test messages."""
    root = tmp_path_factory.mktemp("mail")
    out_: dict[str, Path] = {}
    for name, folder, skip, n in [("ham", "spamassassin/easy_ham", 0, N), ("spam", "spamassassin/spam_2", 0, N),
                                  ("ham_test", "spamassassin/easy_ham_2", 0, 30),
                                  ("spam_test", "spamassassin/spam", 0, 30)]:
        d = root / name
        d.mkdir()
        for p in sorted((corpora / folder).iterdir())[skip:skip + n]:
            os.symlink(p, d / p.name)
        out_[name] = d
    return out_


@pytest.fixture(scope="module")
def trained_db(tmp_path_factory: pytest.TempPathFactory, mailsift_bin: str, folders: dict[str, Path]) -> Path:
    db = tmp_path_factory.mktemp("db") / "models"
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(folders["spam"]))
    assert f"Learned {N} message(s) as spam" in out(p)
    p = sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["ham"]))
    assert f"Learned {N} message(s) as ham" in out(p)
    assert f"Model now holds {N} ham and {N} spam" in out(p)
    return db


@pytest.fixture
def db(trained_db: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model directory, for tests that change it."""
    copy = tmp_path / "models"
    shutil.copytree(trained_db, copy)
    return copy


def test_dump_counts(mailsift_bin: str, trained_db: Path) -> None:
    d = dump(mailsift_bin, trained_db)
    assert d["ham"] == str(N) and d["spam"] == str(N)
    assert int(d["tokens"]) > 10_000
    assert re.match(r"\d{4}-\d\d-\d\dT", d["last change"])
    assert d["learn record"] == f"{N} ham, {N} spam"
    assert d["ready"] == "yes"


def test_relearning_is_a_noop(mailsift_bin: str, db: Path, folders: dict[str, Path]) -> None:
    before = (db / "model.bin").read_bytes()
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(folders["spam"]))
    assert f"Learned 0 message(s) as spam ({N} examined: 0 moved from ham, {N} already learned" in out(p)
    assert (db / "model.bin").read_bytes() == before  # nothing changed, nothing written
    assert dump(mailsift_bin, db)["spam"] == str(N)


def test_label_flip_moves_and_forget_removes(mailsift_bin: str, db: Path, folders: dict[str, Path]) -> None:
    msg = sorted(folders["ham"].iterdir())[0]
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(msg))
    assert "Learned 1 message(s) as spam (1 examined: 1 moved from ham" in out(p)
    d = dump(mailsift_bin, db)
    assert (d["ham"], d["spam"]) == (str(N - 1), str(N + 1))
    assert d["learn record"] == f"{N - 1} ham, {N + 1} spam"
    p = sh(mailsift_bin, "learn", "--forget", "--dbpath", str(db), str(msg), str(SAMPLES / "ham-meeting.eml"))
    assert "Forgot 1 message(s) (2 examined: 1 not learned" in out(p)
    d = dump(mailsift_bin, db)
    assert (d["ham"], d["spam"]) == (str(N - 1), str(N))
    # learned again as ham: back where it started
    sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(msg))
    d = dump(mailsift_bin, db)
    assert (d["ham"], d["spam"]) == (str(N), str(N))


def test_same_message_from_another_delivery_is_recognised(mailsift_bin: str, db: Path, tmp_path: Path,
                                                          folders: dict[str, Path]) -> None:
    """The digest ignores trace headers a later delivery adds (Received, Delivered-To)."""
    raw = sorted(folders["spam"].iterdir())[3].read_bytes()
    copy = tmp_path / "copy.eml"
    copy.write_bytes(b"Delivered-To: someone@else.example\nReceived: from x by y; Mon, 1 Jan 2024\n" + raw)
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(copy))
    assert "1 already learned" in out(p)


def test_mbox_maildir_and_stdin(mailsift_bin: str, tmp_path: Path) -> None:
    db = tmp_path / "db"
    box = mailbox.mbox(str(tmp_path / "in.mbox"))
    for path in sorted(SAMPLES.glob("spam-*.eml")):
        box.add(mailbox.mboxMessage(path.read_bytes()))
    box.close()
    p = sh(mailsift_bin, "learn", "--spam", "--mbox", "--dbpath", str(db), str(tmp_path / "in.mbox"))
    assert "Learned 2 message(s) as spam" in out(p)
    md = mailbox.Maildir(str(tmp_path / "Maildir"))
    for path in sorted(SAMPLES.glob("ham-*.eml")):
        md.add(mailbox.MaildirMessage(path.read_bytes()))
    p = sh(mailsift_bin, "learn", "--ham", "--maildir", "--dbpath", str(db), str(tmp_path / "Maildir"))
    assert "Learned 2 message(s) as ham" in out(p)
    p = sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), "-",
           stdin=b"Subject: from stdin\n\nA message piped in.\n")
    assert "Learned 1 message(s) as ham" in out(p)
    d = dump(mailsift_bin, db)
    assert (d["ham"], d["spam"]) == ("3", "2")
    assert d["ready"].startswith("no")


def test_unreadable_input_reported(mailsift_bin: str, tmp_path: Path) -> None:
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(tmp_path / "db"),
           str(SAMPLES / "spam-pills.eml"), str(tmp_path / "missing.eml"), check=1)
    assert "cannot read" in p.stderr.decode() and "1 unreadable" in out(p)
    assert "Learned 1 message(s) as spam" in out(p)


def test_progress_bar_on_stderr(mailsift_bin: str, tmp_path: Path, folders: dict[str, Path]) -> None:
    p = sh(mailsift_bin, "learn", "--spam", "--progress", "--dbpath", str(tmp_path / "db"), str(folders["spam_test"]))
    err = p.stderr.decode()
    assert "learn spam [" in err and "30/30" in err and "msg/s" in err
    p = sh(mailsift_bin, "learn", "--ham", "--dbpath", str(tmp_path / "db"), str(folders["ham_test"]))
    assert "[" not in p.stderr.decode()  # not a terminal, no --progress: quiet


def test_classify_exit_codes_and_lines(mailsift_bin: str, trained_db: Path, folders: dict[str, Path]) -> None:
    spams = sorted(folders["spam_test"].iterdir())
    hams = sorted(folders["ham_test"].iterdir())
    for path in spams[:2] + hams[:2]:
        p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), str(path), check=None)
        name, label, prob, score = out(p).rstrip("\n").split("\t")
        assert name == str(path) and label in ("spam", "ham", "unsure")
        assert p.returncode == {"spam": 0, "ham": 1, "unsure": 2}[label]
        assert 0.0 <= float(prob) <= 1.0 and -10 <= float(score) <= 20
    p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), *map(str, spams + hams), check=None)
    labels = {Path(line.split("\t")[0]): line.split("\t")[1] for line in out(p).splitlines()}
    assert len(labels) == len(spams) + len(hams)
    assert sum(labels[p] == "spam" for p in spams) >= 0.7 * len(spams)
    assert sum(labels[p] == "ham" for p in hams) >= 0.8 * len(hams)
    assert sum(labels[p] == "spam" for p in hams) <= 2


def test_classify_many_files_and_stdin(mailsift_bin: str, trained_db: Path, folders: dict[str, Path],
                                       tmp_path: Path) -> None:
    hams = sorted(folders["ham_test"].iterdir())[:10]
    p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), *map(str, hams), check=None)
    labels = [line.split("\t")[1] for line in out(p).splitlines()]
    assert len(labels) == 10
    expected = 0 if "spam" in labels else 2 if "unsure" in labels else 1
    assert p.returncode == expected
    p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), str(hams[0]), str(tmp_path / "nope.eml"), check=3)
    assert "cannot read" in p.stderr.decode()
    p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), stdin=hams[0].read_bytes(), check=None)
    assert out(p).startswith("-\t")


def test_required_threshold_changes_the_label(mailsift_bin: str, trained_db: Path) -> None:
    spam = SAMPLES / "spam-lottery.eml"
    p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), str(spam), check=None)
    score = float(out(p).split("\t")[3])
    if score < 19:
        p = sh(mailsift_bin, "classify", "--dbpath", str(trained_db), "--required", str(score + 2), str(spam),
               check=None)
        assert p.returncode in (1, 2)


def test_passthrough_adds_headers_and_renames_incoming(mailsift_bin: str, trained_db: Path) -> None:
    raw = (SAMPLES / "spam-pills.eml").read_bytes()
    p = sh(mailsift_bin, "classify", "-p", "--dbpath", str(trained_db), stdin=raw, check=None)
    assert p.returncode in (0, 1, 2)
    text = p.stdout
    head, _, body = text.partition(b"\n\n")
    assert body == raw.partition(b"\n\n")[2]  # body untouched
    assert b"\nX-Spam-Status-Untrusted: No, score=-5.0" in head
    assert b"\nX-Spam-Flag-Untrusted: NO" in head
    ours = re.findall(rb"^X-Spam-Status: (Yes|No), score=(-?[\d.]+) required=5.0 tests=BAYES_\d+", head, re.M)
    assert len(ours) == 1
    assert re.search(rb"^X-Spam-Score: ", head, re.M) and re.search(rb"^X-Spam-Level: ", head, re.M)
    assert (ours[0][0] == b"Yes") == (p.returncode == 0) == bool(re.search(rb"^X-Spam-Flag: YES", head, re.M))
    # every incoming header line is still there, in order
    original = [line for line in raw.partition(b"\n\n")[0].split(b"\n") if not line.startswith(b"X-Spam")]
    kept = [line for line in head.split(b"\n") if not line.startswith(b"X-Spam")]
    assert kept[: len(original)] == original


def test_passthrough_crlf_message(mailsift_bin: str, trained_db: Path) -> None:
    raw = (SAMPLES / "ham-meeting.eml").read_bytes().replace(b"\n", b"\r\n")
    p = sh(mailsift_bin, "classify", "-p", "--dbpath", str(trained_db), stdin=raw, check=None)
    head, sep, body = p.stdout.partition(b"\r\n\r\n")
    assert sep and body == raw.partition(b"\r\n\r\n")[2]
    assert b"\r\nX-Spam-Status: " in head and b"\n" not in head.replace(b"\r\n", b"")


def test_unsure_below_200_each(mailsift_bin: str, tmp_path: Path, folders: dict[str, Path]) -> None:
    db = tmp_path / "small"
    sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(folders["spam_test"]))
    sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["ham_test"]))
    p = sh(mailsift_bin, "classify", "--dbpath", str(db), str(SAMPLES / "spam-lottery.eml"), check=2)
    assert out(p).split("\t")[1] == "unsure"
    p = sh(mailsift_bin, "classify", "-p", "--dbpath", str(db), str(SAMPLES / "spam-lottery.eml"), check=2)
    assert b"MAILSIFT_UNSURE" in p.stdout and b"X-Spam-Flag: YES" not in p.stdout


def test_backup_restore_clear(mailsift_bin: str, db: Path, tmp_path: Path, folders: dict[str, Path]) -> None:
    backup = tmp_path / "model-backup.npz"
    p = sh(mailsift_bin, "learn", "--backup", str(backup), "--dbpath", str(db))
    assert f"backed up {N} ham, {N} spam and {2 * N} learn record entries" in out(p)
    probe = str(SAMPLES / "spam-pills.eml")
    before = out(sh(mailsift_bin, "classify", "--dbpath", str(db), probe, check=None)).split("\t")[2]
    p = sh(mailsift_bin, "learn", "--clear", "--dbpath", str(db))
    assert not (db / "model.bin").exists() and not (db / "learned.sqlite").exists()
    p = sh(mailsift_bin, "classify", "--dbpath", str(db), probe, check=3)
    assert "no model" in p.stderr.decode()
    p = sh(mailsift_bin, "learn", "--restore", str(backup), "--dbpath", str(db))
    assert f"restored {N} ham, {N} spam and {2 * N} learn record entries" in out(p)
    after = out(sh(mailsift_bin, "classify", "--dbpath", str(db), probe, check=None)).split("\t")[2]
    assert after == before
    # the record came back too: relearning is still a no-op
    p = sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["ham"]))
    assert f"{N} already learned" in out(p)
    p = sh(mailsift_bin, "learn", "--restore", str(SAMPLES / "ham-list.eml"), "--dbpath", str(db), check=1)
    assert "not a readable mailsift backup" in p.stderr.decode()


def test_corrupt_model_refused(mailsift_bin: str, db: Path) -> None:
    model = db / "model.bin"
    data = bytearray(model.read_bytes())
    data[100:200] = b"\0" * 100
    model.write_bytes(bytes(data))
    probe = str(SAMPLES / "ham-meeting.eml")
    p = sh(mailsift_bin, "classify", "--dbpath", str(db), probe, check=3)
    assert "refusing" in p.stderr.decode() or "corrupt" in p.stderr.decode()
    assert out(p) == ""
    # -p never loses the message: it passes through unchanged
    raw = Path(probe).read_bytes()
    p = sh(mailsift_bin, "classify", "-p", "--dbpath", str(db), probe, check=3)
    assert p.stdout == raw
    # learn refuses to build on it (and leaves it alone)
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(SAMPLES / "spam-pills.eml"), check=1)
    assert "refusing" in p.stderr.decode() or "corrupt" in p.stderr.decode()
    assert model.read_bytes() == bytes(data)
    p = sh(mailsift_bin, "learn", "--dump", "--dbpath", str(db), check=1)
    # a truncated model file is refused too
    (db / "model.json").write_text("{}")
    p = sh(mailsift_bin, "classify", "--dbpath", str(db), probe, check=3)
    assert "format version" in p.stderr.decode()


def test_usage_errors(mailsift_bin: str, tmp_path: Path) -> None:
    p = sh(mailsift_bin, "learn", "--dbpath", str(tmp_path), check=2)  # no action
    assert b"one of the arguments" in p.stderr
    p = sh(mailsift_bin, "learn", "--spam", "--ham", "x", check=2)
    p = sh(mailsift_bin, "learn", "--spam", "--dbpath", str(tmp_path / "d"), check=1)
    assert b"at least one PATH" in p.stderr
    p = sh(mailsift_bin, "classify", "-p", "--dbpath", str(tmp_path), "a", "b", check=3)
