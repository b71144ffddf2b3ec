"""`mailsift model list` and `mailsift model rollback` as a user runs them (subprocess), over
model directories trained with `mailsift learn`."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

N = 220  # per class: past the 200/200 the model needs before it decides
MORE = 40  # the third learn run: more ham


def sh(bin_: str, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([bin_, *args], capture_output=True, timeout=300)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def out(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout.decode()


def dump(bin_: str, db: Path) -> dict[str, str]:
    text = out(sh(bin_, "learn", "--dump", "--dbpath", str(db)))
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def listing(bin_: str, db: Path, *extra: str) -> list[dict[str, str]]:
    """`model list` rows: live, name, date, source, ham, spam, record ham, record spam."""
    rows = []
    for line in out(sh(bin_, "model", "list", "--dbpath", str(db), *extra)).splitlines()[1:]:
        m = re.match(r"([* ]) (\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", line)
        if m:
            rows.append(dict(zip(("live", "name", "date", "source", "ham", "spam", "rham", "rspam"), m.groups())))
    return rows


def classify(bin_: str, db: Path, msg: Path) -> tuple[str, str]:
    p = sh(bin_, "classify", "--dbpath", str(db), str(msg), check=None)
    name, label, prob, score = out(p).strip().split("\t")
    return label, score


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mail")
    made: dict[str, Path] = {}
    for name, folder, skip, n in [("spam", "spamassassin/spam_2", 0, N), ("ham", "spamassassin/easy_ham", 0, N),
                                  ("more_ham", "spamassassin/easy_ham", N, MORE),
                                  ("probe", "spamassassin/easy_ham_2", 0, 1)]:
        d = root / name
        d.mkdir()
        for p in sorted((corpora / folder).iterdir())[skip:skip + n]:
            os.symlink(p, d / p.name)
        made[name] = d
    return made


@pytest.fixture(scope="module")
def history_db(tmp_path_factory: pytest.TempPathFactory, mailsift_bin: str, folders: dict[str, Path]) -> Path:
    """Three learn runs: spam only (not ready: everything unsure), + ham, + more ham."""
    db = tmp_path_factory.mktemp("db") / "models"
    sh(mailsift_bin, "learn", "--spam", "--dbpath", str(db), str(folders["spam"]))
    sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["ham"]))
    sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["more_ham"]))
    return db


@pytest.fixture
def db(history_db: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(history_db, copy)
    return copy


def probe(folders: dict[str, Path]) -> Path:
    return next(folders["probe"].iterdir())


def test_list_shows_each_learn_run_newest_first(mailsift_bin: str, history_db: Path) -> None:
    rows = listing(mailsift_bin, history_db)
    assert [(r["source"], r["ham"], r["spam"], r["rham"], r["rspam"]) for r in rows] == [
        ("learn", str(N + MORE), str(N), str(N + MORE), str(N)),
        ("learn", str(N), str(N), str(N), str(N)),
        ("learn", "0", str(N), "0", str(N)),
    ]
    assert [r["live"] for r in rows] == ["*", " ", " "]
    assert [r["name"].split("-")[0] for r in rows] == ["3", "2", "1"]  # the model's generation
    assert rows[0]["date"] >= rows[1]["date"] >= rows[2]["date"]


def test_keep_versions_prunes_the_oldest(mailsift_bin: str, db: Path, folders: dict[str, Path],
                                         tmp_path: Path) -> None:
    conf = tmp_path / "mailsift.toml"
    conf.write_text("[classifier]\nkeep_versions = 2\n")
    before = listing(mailsift_bin, db)
    sh(mailsift_bin, "learn", "--forget", "--config", str(conf), "--dbpath", str(db), str(folders["more_ham"]))
    rows = listing(mailsift_bin, db)
    assert len(rows) == 2
    assert rows[1]["name"] == before[0]["name"]
    assert (rows[0]["live"], rows[0]["ham"], rows[0]["rham"]) == ("*", str(N), str(N))
    assert sorted(p.name for p in (db / "versions").iterdir()) == sorted(r["name"] for r in rows)

    conf.write_text("[classifier]\nkeep_versions = 0\n")
    sh(mailsift_bin, "learn", "--ham", "--config", str(conf), "--dbpath", str(db), str(folders["more_ham"]))
    assert [r["name"] for r in listing(mailsift_bin, db, "--config", str(conf))] == [r["name"] for r in rows]

    conf.write_text("[classifier]\nkeep_versions = -1\n")
    p = sh(mailsift_bin, "model", "list", "--config", str(conf), "--dbpath", str(db), check=3)
    assert b"keep_versions" in p.stderr


def test_rollback_restores_the_model_and_its_learn_record(mailsift_bin: str, db: Path,
                                                          folders: dict[str, Path]) -> None:
    msg = probe(folders)
    assert classify(mailsift_bin, db, msg)[0] == "ham"
    first = listing(mailsift_bin, db)[-1]
    p = sh(mailsift_bin, "model", "rollback", first["name"], "--dbpath", str(db))
    assert f"rolled back to version {first['name']}" in out(p)
    d = dump(mailsift_bin, db)
    assert (d["ham"], d["spam"], d["learn record"]) == ("0", str(N), f"0 ham, {N} spam")
    assert d["ready"].startswith("no")
    assert "warning" not in sh(mailsift_bin, "learn", "--dump", "--dbpath", str(db)).stderr.decode()
    # the verdict of the spam-only model: not ready, so unsure
    assert classify(mailsift_bin, db, msg)[0] == "unsure"
    # the rollback is a version of its own, and live
    rows = listing(mailsift_bin, db)
    assert (rows[0]["live"], rows[0]["source"], rows[0]["ham"], rows[0]["spam"]) == ("*", "rollback", "0", str(N))
    assert int(rows[0]["name"].split("-")[0]) == 4  # the next generation, not the old one's
    # sa-learn semantics follow the restored record: the ham is new to this model again
    p = sh(mailsift_bin, "learn", "--ham", "--dbpath", str(db), str(folders["ham"]))
    assert f"Learned {N} message(s) as ham" in out(p) and "0 already learned" in out(p)


def test_rollback_without_version_steps_back_one_version_at_a_time(mailsift_bin: str, db: Path,
                                                                   folders: dict[str, Path]) -> None:
    v3, v2, v1 = listing(mailsift_bin, db)
    sh(mailsift_bin, "model", "rollback", "--dbpath", str(db))
    assert (dump(mailsift_bin, db)["ham"], dump(mailsift_bin, db)["learn record"]) == (str(N), f"{N} ham, {N} spam")
    p = sh(mailsift_bin, "model", "rollback", "--dbpath", str(db))
    assert f"rolled back to version {v1['name']}" in out(p)
    assert classify(mailsift_bin, db, probe(folders))[0] == "unsure"
    live = sha(db / "model.bin")
    p = sh(mailsift_bin, "model", "rollback", "--dbpath", str(db), check=1)
    assert b"no kept version before" in p.stderr
    assert sha(db / "model.bin") == live
    # forward again by name
    sh(mailsift_bin, "model", "rollback", v3["name"], "--dbpath", str(db))
    assert dump(mailsift_bin, db)["learn record"] == f"{N + MORE} ham, {N} spam"
    assert classify(mailsift_bin, db, probe(folders))[0] == "ham"


def test_rollback_to_a_missing_version_is_a_clear_error(mailsift_bin: str, db: Path, tmp_path: Path) -> None:
    live = sha(db / "model.bin")
    record = dump(mailsift_bin, db)["learn record"]
    p = sh(mailsift_bin, "model", "rollback", "99-20200101T000000Z", "--dbpath", str(db), check=1)
    err = p.stderr.decode()
    assert "no version 99-20200101T000000Z" in err and "mailsift model list" in err and "Traceback" not in err
    p = sh(mailsift_bin, "model", "rollback", "77", "--dbpath", str(db), check=1)
    assert "no version 77" in p.stderr.decode()
    assert sha(db / "model.bin") == live and dump(mailsift_bin, db)["learn record"] == record
    assert len(listing(mailsift_bin, db)) == 3
    # a model directory without any history
    p = sh(mailsift_bin, "model", "rollback", "--dbpath", str(tmp_path / "empty"), check=1)
    assert "no model versions kept" in p.stderr.decode()


def test_a_corrupt_version_is_refused(mailsift_bin: str, db: Path) -> None:
    oldest = listing(mailsift_bin, db)[-1]["name"]
    path = db / "versions" / oldest / "model.bin"
    data = bytearray(path.read_bytes())
    path.unlink()  # it is a hard link of a model no longer live; write a new file
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    live = sha(db / "model.bin")
    p = sh(mailsift_bin, "model", "rollback", oldest, "--dbpath", str(db), check=1)
    assert f"version {oldest} cannot be used" in p.stderr.decode()
    assert sha(db / "model.bin") == live


def test_restore_is_a_version_with_the_next_generation(mailsift_bin: str, db: Path, tmp_path: Path) -> None:
    backup = tmp_path / "model.npz"
    sh(mailsift_bin, "learn", "--backup", str(backup), "--dbpath", str(db))
    sh(mailsift_bin, "learn", "--restore", str(backup), "--dbpath", str(db))
    rows = listing(mailsift_bin, db)
    assert (rows[0]["live"], rows[0]["source"], rows[0]["ham"], rows[0]["rham"]) == ("*", "restore", str(N + MORE),
                                                                                    str(N + MORE))
    assert [r["name"].split("-")[0] for r in rows] == ["4", "3", "2", "1"]


def test_feedback_saves_within_an_hour_are_one_version(db: Path, folders: dict[str, Path]) -> None:
    """The store's feedback learner (source feedback) saves every few seconds while users move
    mail: those saves coalesce into one version per hour, the versions before them stay."""
    import json

    from mailsift.classifier.learn import Learner

    before = [v.name for v in sorted((db / "versions").iterdir())]
    spam = sorted(folders["spam"].iterdir())
    ham = sorted(folders["more_ham"].iterdir())

    def feedback_save(path: Path, label: str) -> None:
        with Learner(db, source="feedback") as learner:
            learner.learn_many([(str(path), path.read_bytes())], label)  # a ham moved to Junk
            learner.save()

    feedback_save(ham[0], "spam")
    feedback_save(ham[1], "spam")
    new = [p for p in sorted((db / "versions").iterdir()) if p.name not in before]
    assert len(new) == 1 and new[0].name.startswith("5-")  # generation 4 was replaced by 5
    meta = json.loads((new[0] / "version.json").read_text())
    assert (meta["source"], meta["n_ham"], meta["n_spam"]) == ("feedback", N + MORE - 2, N + 2)
    # an hour after the first of them, the next save is a version of its own
    meta["since"] -= 3601
    (new[0] / "version.json").write_text(json.dumps(meta))
    feedback_save(spam[0], "ham")
    assert len([p for p in (db / "versions").iterdir() if p.name not in before]) == 2
    assert all((db / "versions" / name).is_dir() for name in before)
