"""The model as the bytes a trainer publishes, and installing published bytes into a model dir.

    data, meta = snapshot(dbpath)           # the live model and its learn record, pickle-free
    install(dbpath, data, keep_versions)    # what `mailsift learn --restore` does, source "share"

The bytes are whatever the classifier's portable export writes (persist.export_state, an .npz
without pickles); this module is the only place that knows it, so the publication format
follows the classifier's. A version is installed under the model directory's learn lock: the
model is saved atomically (the milter's watcher reloads it), the learn record replaced by the
published one, and the model history gets a version with source `share`.

The local share state (DBPATH/share/state.json) says which published version is installed and
the identity of the model file then, so a change made here since (a `mailsift learn`) is seen.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARE_DIR = "share"
STATE_FILE = "state.json"
LOCK_FILE = ".learn.lock"  # the same lock as mailsift.classifier.learn.LOCK_FILE

FileId = tuple[int, int, int]


class InstallError(Exception):
    """install_in_child() failed: the published bytes are not a model this mailsift reads."""


def model_file_id(dbpath: str | Path) -> FileId | None:
    """(inode, mtime_ns, size) of the live model file; None when there is none."""
    from mailsift.classifier.persist import MODEL_FILE

    try:
        st = os.stat(Path(dbpath) / MODEL_FILE)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _export(model: Any, rows: list[tuple[str, str, float]]) -> bytes:
    from mailsift.classifier.persist import export_state

    with tempfile.TemporaryDirectory(prefix="mailsift-share-") as tmp:
        path = Path(tmp) / "state.npz"
        export_state(model, path, rows)
        return path.read_bytes()


def _import(data: bytes) -> tuple[Any, list[tuple[str, str, float]]]:
    from mailsift.classifier.persist import import_state

    with tempfile.TemporaryDirectory(prefix="mailsift-share-") as tmp:
        path = Path(tmp) / "state.npz"
        path.write_bytes(data)
        return import_state(path)


def _locked(dbpath: Path) -> Any:
    dbpath.mkdir(parents=True, exist_ok=True)
    lock = open(dbpath / LOCK_FILE, "a+")  # noqa: SIM115 - the caller closes it
    fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def snapshot(dbpath: str | Path) -> tuple[bytes, dict[str, Any], FileId | None]:
    """The live model and learn record as bytes, a little metadata, and the model file's identity
    (all read under the learn lock, so they belong together). Raises ModelError."""
    from mailsift.classifier.persist import load_model
    from mailsift.classifier.record import LearnRecord

    d = Path(dbpath)
    with _locked(d):
        fid = model_file_id(d)
        model = load_model(d)
        with LearnRecord(d) as record:
            rows = record.rows()
    meta = {"n_ham": model.n_ham_, "n_spam": model.n_spam_, "record": len(rows)}
    return _export(model, rows), meta, fid


def install(dbpath: str | Path, data: bytes, keep_versions: int) -> FileId | None:
    """Make the published `data` the live model of `dbpath`; returns the new model file's identity.
    Raises ModelError when the bytes are not a model this mailsift reads (nothing is changed)."""
    from mailsift.classifier.persist import ModelError, read_sidecar, save_model
    from mailsift.classifier.record import LearnRecord
    from mailsift.classifier.versions import record_version

    model, rows = _import(data)
    d = Path(dbpath)
    with _locked(d):
        try:  # generations only grow, so the model history's names stay in order
            live = int(read_sidecar(d).get("generation", 0))
        except (ModelError, ValueError, TypeError):
            live = 0
        with LearnRecord(d) as record:
            record.begin()
            try:
                model.generation = max(model.generation, live) + 1
                record.replace_all(rows)
                record.set_meta("generation", str(model.generation))
                save_model(model, d)
                record_version(d, "share", keep_versions, record=record)
                record.commit()
            except BaseException:
                record.rollback()
                raise
        return model_file_id(d)


@dataclass
class LocalState:
    """What this model directory holds of the shared model."""

    version: int = 0                 # the published version installed (or published) here
    model_id: FileId | None = None   # the model file's identity right after that


def read_state(dbpath: str | Path) -> LocalState:
    try:
        obj = json.loads((Path(dbpath) / SHARE_DIR / STATE_FILE).read_text())
        fid = obj.get("model_id")
        return LocalState(int(obj.get("version", 0)), tuple(int(x) for x in fid) if fid else None)  # type: ignore[arg-type]
    except (OSError, ValueError, TypeError, AttributeError):
        return LocalState()


def write_state(dbpath: str | Path, state: LocalState) -> None:
    from mailsift.classifier.persist import atomic_write

    d = Path(dbpath) / SHARE_DIR
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = json.dumps({"version": state.version, "model_id": state.model_id}).encode()
    atomic_write(d / STATE_FILE, lambda fh: fh.write(data + b"\n"))


# How much lower the installer's priority is than its parent's (nice), so that on a CPU it shares
# with the milter the milter's connections come first.
INSTALL_NICE = 10


def install_in_child(dbpath: str | Path, data: bytes, keep_versions: int, timeout: float = 300.0,
                     cpus: frozenset[int] | None = None, nice: int = INSTALL_NICE) -> FileId | None:
    """install() in a child process: the milter's process (one GIL for every connection; with
    score workers it never imports the classifier) only reloads the saved model, as it does for
    any new model file. The child (a Python start, the classifier's imports and the install:
    about 0.45 s of CPU) runs on `cpus` when given (the CPUs the milter left to others) and
    `nice` steps below its parent. Raises InstallError."""
    import subprocess
    import sys

    try:
        proc = subprocess.Popen([sys.executable, "-m", "mailsift.share.snapshot", str(dbpath), str(keep_versions)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise InstallError(f"cannot run the installer: {exc}") from None
    _move_off(proc.pid, cpus, nice)
    try:
        out, err = proc.communicate(data, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise InstallError(f"the installer did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise InstallError(lines[-1] if lines else f"the installer exited with status {proc.returncode}")
    fid = json.loads(out)
    return tuple(fid) if fid else None  # type: ignore[return-value]


def _move_off(pid: int, cpus: frozenset[int] | None, nice: int) -> None:
    """Put the just started child `pid` on `cpus` and `nice` steps below this process, before it
    is sent the published bytes (it imports the classifier and installs only once it has them).
    A child already gone (a fast failure) or a system without these calls is left as it is."""
    try:
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(pid, cpus)
        if nice > 0:
            os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
    except OSError:
        pass


def _main(argv: list[str]) -> int:
    """python -m mailsift.share.snapshot DBPATH KEEP_VERSIONS < published bytes"""
    import sys

    from mailsift.classifier.persist import ModelError

    try:
        fid = install(argv[0], sys.stdin.buffer.read(), int(argv[1]))
    except ModelError as exc:
        print(f"{exc}", file=sys.stderr)
        return 1
    print(json.dumps(fid))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
