"""A running `mailsift milter` whose model file is replaced again and again (the nightly retrain,
`learn`, a published model under `share`) keeps its resident memory: each reload frees the old
model's arrays, and they go back to the system (mailsift/heap.py) instead of staying in a
fragmented heap that grew by about 10 MB per reload."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import child_pids, wait_for
from milter_helpers import MilterProcess

pytestmark = [pytest.mark.integration]

RELOADS = 8


def rss_mb(pid: int) -> float:
    """Resident memory of the milter and its children (score workers, if any), MB."""
    total = 0
    for p in [pid, *child_pids(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def loads(log: str) -> int:
    return len(re.findall(r"model \S+ loaded \(load #\d+\)", log))


def test_reloads_do_not_grow_resident_memory(milter_factory: Callable[..., MilterProcess], workdir: Path,
                                             trained_dbpath: Path) -> None:
    db = workdir / "models"
    shutil.copytree(trained_dbpath, db)
    db.chmod(0o755)
    cfg = workdir / "milter.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{db}"\n[milter]\nclamd = ""\nreload_interval = 0.2\n')
    milter = milter_factory("--config", str(cfg))
    assert milter.daemon is not None
    wait_for(lambda: loads(milter.log()) >= 1, 30, what="first model load")
    model = db / "model.bin"
    after: list[float] = []
    for n in range(2, RELOADS + 2):
        # The same model written anew and renamed into place, as `learn` saves: a new file to load.
        tmp = db / "model.bin.tmp"
        shutil.copyfile(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, model)
        wait_for(lambda: loads(milter.log()) >= n, 30, what=f"model load #{n}")
        after.append(rss_mb(milter.daemon.pid))
    growth = max(after[2:]) - after[0]
    assert growth < 15, f"resident memory after each reload, MB: {[round(x) for x in after]}"
