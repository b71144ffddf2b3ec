"""The default model (make model) and make run's sample classification, on a small corpus."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

from mailsift.classifier.api import load_model
from mailsift.classifier.default_model import corpus_stream, ensure_default_model
from mailsift.run_local import classify_samples


def _mini_corpora(root: Path, corpora: Path) -> Path:
    mini = root / "corpora"
    for folder, n in (("spamassassin/easy_ham", 12), ("spamassassin/spam_2", 8), ("csdmc2010/ham", 5)):
        d = mini / folder
        d.mkdir(parents=True)
        for p in sorted((corpora / folder).iterdir())[:n]:
            shutil.copy(p, d / p.name)
    return mini


def _add_duplicate(mini: Path) -> None:
    """The same message under another name and folder: learned once."""
    first = sorted((mini / "spamassassin/easy_ham").iterdir())[0]
    shutil.copy(first, mini / "csdmc2010/ham" / "DUP.eml")


def test_default_model_dedups_orders_and_keeps_an_existing_model(tmp_path: Path, corpora: Path) -> None:
    mini = _mini_corpora(tmp_path, corpora)
    distinct = len(corpus_stream(mini))
    assert 15 <= distinct <= 25
    _add_duplicate(mini)
    items = corpus_stream(mini)
    assert len(items) == distinct  # the duplicate is dropped
    assert not any(p.endswith("DUP.eml") for _, p, _ in items)
    n_spam = sum(label == "spam" for _, _, label in items)
    dates = [d for d, _, _ in items]
    assert dates == sorted(dates)
    db = tmp_path / "models"
    out = io.StringIO()
    assert ensure_default_model(db, mini, out=out) is True
    model = load_model(db)
    assert (model.n_ham_, model.n_spam_) == (distinct - n_spam, n_spam)
    assert not (db / ".training").exists()
    stamp = (db / "model.json").stat().st_mtime_ns
    assert ensure_default_model(db, mini, out=out) is False  # exists: left alone
    assert (db / "model.json").stat().st_mtime_ns == stamp
    assert ensure_default_model(db, mini, force=True, out=out) is True
    assert "exists: leaving it" in out.getvalue()
    results = classify_samples(str(db))
    assert {name for name, *_ in results} >= {"spam-pills.eml", "ham-meeting.eml"}
    assert all(label == "unsure" for _, label, _, _ in results)  # far below 200/200: unsure


def test_module_entry_point(tmp_path: Path, corpora: Path) -> None:
    mini = _mini_corpora(tmp_path, corpora)
    cmd = [sys.executable, "-m", "mailsift.classifier.default_model", "--dbpath", str(tmp_path / "m"),
           "--corpora", str(mini)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "trained the default model" in p.stdout, p.stderr
    p = subprocess.run(cmd[:-2] + ["--corpora", str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "exists" in p.stdout  # a model is there: corpora not needed
    p = subprocess.run(cmd[:3] + ["--dbpath", str(tmp_path / "n"), "--corpora", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "corpora not found" in p.stderr
