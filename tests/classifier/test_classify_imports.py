"""What one `mailsift classify FILE` imports: a pipeline runs one process per message, and every
module is paid for in every process (docs/classifier.md, "One process per message")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "classifier" / "samples"

# Not needed to score one message: numpy and scikit-learn (the bulk path's), the whole config
# module (only [classifier] is read), logging (left unconfigured), typing and pathlib (only
# annotations and path joins used them), dataclasses and inspect (the Verdict's records and the
# settings dataclass: without --config classify reads classifier/defaults.py).
NOT_IMPORTED = {"numpy", "sklearn", "joblib", "mailsift.config", "mailsift.classifier.model", "logging",
                "typing", "pathlib", "dataclasses", "inspect", "mailsift.classifier.settings"}


def imported_by(argv: list[str]) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `python -S -X importtime -m mailsift ARGV` on this tree (-S: what mailsift imports,
    not what the venv's .pth files do)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-S", "-X", "importtime", "-m", "mailsift", *argv], env=env,
                       capture_output=True, text=True, timeout=120)
    return p, {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}


def test_classify_one_message_imports_only_what_scores_it(tmp_path: Path) -> None:
    db = tmp_path / "model"
    samples = sorted(SAMPLES.glob("*.eml"))
    for label, files in (("--spam", [p for p in samples if p.name.startswith("spam")]),
                         ("--ham", [p for p in samples if p.name.startswith("ham")])):
        subprocess.run([sys.executable, "-m", "mailsift", "learn", "--no-progress", "--dbpath", str(db), label,
                        *map(str, files)], env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
                       capture_output=True, timeout=300)
    p, imported = imported_by(["classify", "--dbpath", str(db), str(samples[0])])
    assert p.returncode == 2 and p.stdout.startswith(f"{samples[0]}\tunsure\t"), p.stderr[-2000:]  # 4 learned
    assert "mailsift.classifier.scorer" in imported  # scored here, by the numpy-free scorer
    assert imported & NOT_IMPORTED == set()
