"""Model history: the last `keep_versions` saved models, and rolling back to one of them.

    DBPATH/versions/<generation>-<UTC time>/
        model.bin, model.json      the saved model and its sidecar (hard links, else copies;
                                   a version saved before format 3 holds model.joblib)
        learned.sqlite             the learn record as it was committed with that model
        version.json               source (learn | feedback | retrain | restore | rollback |
                                   default), generation, date, counts, the version a rollback
                                   restored

Every writer of the live model records a version after renaming the model into place and
before committing the learn record, under the model directory's learn lock: the record snapshot
is read through the writer's own transaction, so it is exactly what is committed with it.
Recording is best effort: a full disk loses the history entry, never the saved model.

`rollback` loads a version (its digest checked as any model is), gives it the next generation,
replaces the learn record by the version's snapshot and saves the model atomically
(save_model: temp file, fsync, rename; running milters reload it); the rollback is a version too.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailsift.classifier.persist import MODEL_FILE, SIDECAR_FILE, ModelError, fsync_path, load_model, save_model
from mailsift.classifier.record import RECORD_FILE, LearnRecord

log = logging.getLogger("mailsift.classifier.versions")

VERSIONS_DIR = "versions"
VERSION_META = "version.json"
LOCK_FILE = ".learn.lock"  # the same lock as mailsift.classifier.learn.LOCK_FILE
DEFAULT_KEEP = 5
SOURCES = ("learn", "feedback", "retrain", "restore", "rollback", "default", "share")
# The store's feedback learner saves every few seconds while users move mail: its saves within
# this many seconds of the first one are one version (the newest replaces the previous one), so
# the history is not a minute of Junk moves, and a rollback undoes the last hour of them.
COALESCE_SECONDS = {"feedback": 3600.0}


class VersionError(Exception):
    """No such version, or nothing to roll back to."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path
    meta: dict[str, Any]

    @property
    def saved_at(self) -> float:
        return float(self.meta.get("saved_at", 0.0))

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", 0))

    @property
    def source(self) -> str:
        return str(self.meta.get("source", "?"))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # the live file is only ever replaced by rename: the link stays intact
    except OSError:
        shutil.copy2(src, dst)
        fsync_path(dst)


def _snapshot_record(rows: list[tuple[str, str, float | None, float]], target: Path) -> None:
    db = sqlite3.connect(target, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("CREATE TABLE learned (digest TEXT PRIMARY KEY, label TEXT NOT NULL, step REAL, "
                   "learned_at REAL NOT NULL)")
        db.execute("BEGIN")
        db.executemany("INSERT INTO learned VALUES (?, ?, ?, ?)", rows)
        db.execute("COMMIT")
    finally:
        db.close()
    os.chmod(target, 0o640)
    fsync_path(target)


def _record_rows(record: LearnRecord) -> list[tuple[str, str, float | None, float]]:
    return list(record.db.execute("SELECT digest, label, step, learned_at FROM learned"))


def record_version(dbpath: str | Path, source: str, keep: int = DEFAULT_KEEP, record: LearnRecord | None = None,
                   restored_from: Version | None = None) -> Version | None:
    """Keep the live model of `dbpath` as a version (the caller holds the learn lock). `record`:
    the writer's learn record connection, inside its transaction; None reads the committed one.
    Returns None when keep is 0 or recording failed (logged)."""
    if keep <= 0:
        return None
    d = Path(dbpath)
    try:
        return _record(d, source, keep, record, restored_from)
    except (OSError, sqlite3.Error, ValueError) as exc:
        log.warning("could not keep this model in %s: %s (the model itself is saved)", d / VERSIONS_DIR, exc)
        return None


def _record(d: Path, source: str, keep: int, record: LearnRecord | None,
            restored_from: Version | None) -> Version:
    sidecar = json.loads((d / SIDECAR_FILE).read_text())
    root = d / VERSIONS_DIR
    root.mkdir(mode=0o750, exist_ok=True)
    now = time.time()
    since, replaces = now, None
    window = COALESCE_SECONDS.get(source)
    if window:
        newest = next(iter(list_versions(d)), None)
        if newest is not None and newest.source == source and now - float(newest.meta.get("since", 0)) < window:
            since, replaces = float(newest.meta["since"]), newest
    tmp = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
    try:
        _link_or_copy(d / MODEL_FILE, tmp / MODEL_FILE)  # format 3: the live model is never a pickle here
        _link_or_copy(d / SIDECAR_FILE, tmp / SIDECAR_FILE)
        if record is not None:
            rows = _record_rows(record)
        elif (d / RECORD_FILE).exists():
            with LearnRecord(d) as committed:
                rows = _record_rows(committed)
        else:
            rows = []
        _snapshot_record(rows, tmp / RECORD_FILE)
        generation = int(sidecar.get("generation", 0))
        meta = {
            "source": source,
            "generation": generation,
            "saved_at": now,
            "since": since,
            "n_ham": sidecar.get("n_ham"),
            "n_spam": sidecar.get("n_spam"),
            "record_ham": sum(1 for r in rows if r[1] == "ham"),
            "record_spam": sum(1 for r in rows if r[1] == "spam"),
            "model_sha256": sidecar.get("model_sha256"),
            "restored_from": restored_from.name if restored_from else None,
            "restored_from_saved_at": restored_from.saved_at if restored_from else None,
        }
        (tmp / VERSION_META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        os.chmod(tmp / VERSION_META, 0o640)
        fsync_path(tmp / VERSION_META)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        name = f"{generation}-{stamp}"
        for n in range(2, 1000):
            try:
                os.rename(tmp, root / name)  # fails when the name exists (and is not empty)
                break
            except OSError:
                if not (root / name).exists():
                    raise
                name = f"{generation}-{stamp}-{n}"
        fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if replaces is not None:
        shutil.rmtree(replaces.path, ignore_errors=True)
    prune(d, keep)
    return Version(name, root / name, meta)


def list_versions(dbpath: str | Path) -> list[Version]:
    """The kept versions, newest first (unreadable entries are skipped)."""
    root = Path(dbpath) / VERSIONS_DIR
    out = []
    try:
        entries = sorted(os.listdir(root))
    except FileNotFoundError:
        return []
    for name in entries:
        if name.startswith("."):
            continue
        try:
            meta = json.loads((root / name / VERSION_META).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and isinstance(meta.get("saved_at"), (int, float)):
            out.append(Version(name, root / name, meta))
    out.sort(key=lambda v: (v.saved_at, v.generation, v.name), reverse=True)
    return out


def prune(dbpath: str | Path, keep: int) -> list[str]:
    """Remove all but the newest `keep` versions (and leftovers of interrupted recordings)."""
    root = Path(dbpath) / VERSIONS_DIR
    removed = []
    for v in list_versions(dbpath)[keep:]:
        shutil.rmtree(v.path, ignore_errors=True)
        removed.append(v.name)
    if root.is_dir():
        for name in os.listdir(root):
            p = root / name
            if name.startswith(".new-") and time.time() - p.stat().st_mtime > 3600:
                shutil.rmtree(p, ignore_errors=True)
    return removed


def live_version(dbpath: str | Path, versions: list[Version]) -> Version | None:
    """The version holding the live model (same model digest), if it is kept."""
    try:
        digest = json.loads((Path(dbpath) / SIDECAR_FILE).read_text()).get("model_sha256")
    except (OSError, ValueError, AttributeError):
        return None
    return next((v for v in versions if digest and v.meta.get("model_sha256") == digest), None)


def resolve(dbpath: str | Path, wanted: str | None) -> Version:
    """The version named `wanted` (its full name or its generation), or by default the one
    before the live one: a rollback counts as the version it restored, so repeated rollbacks
    step further back."""
    versions = list_versions(dbpath)
    if not versions:
        raise VersionError(f"no model versions kept in {Path(dbpath) / VERSIONS_DIR} "
                           "([classifier] keep_versions = 0, or nothing saved yet)")
    if wanted is not None:
        exact = [v for v in versions if v.name == wanted]
        if not exact and wanted.isdigit():
            exact = [v for v in versions if v.generation == int(wanted)]
        if len(exact) > 1:
            raise VersionError(f"version {wanted} is ambiguous: " + ", ".join(v.name for v in exact))
        if not exact:
            raise VersionError(f"no version {wanted} in {Path(dbpath) / VERSIONS_DIR} (`mailsift model list` "
                               "shows the kept ones)")
        return exact[0]
    live = live_version(dbpath, versions)
    if live is None:
        return versions[0]
    before, what = live.saved_at, live.name
    if live.source == "rollback" and live.meta.get("restored_from_saved_at") is not None:
        before = float(live.meta["restored_from_saved_at"])
        what = f"{live.meta.get('restored_from')} (which the live {live.name} restored)"
    older = [v for v in versions if v.saved_at < before]
    if not older:
        raise VersionError(f"no kept version before {what} to roll back to; give a VERSION from `mailsift model list`")
    return older[0]


def rollback(dbpath: str | Path, wanted: str | None, keep: int = DEFAULT_KEEP) -> tuple[Version, Version | None]:
    """Make version `wanted` (default: the one before the live one) the live model, with its
    learn record. Returns (the version restored, the new rollback version or None)."""
    d = Path(dbpath)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = resolve(d, wanted)
        try:
            model = load_model(target.path, convert=False)  # an old-format version is read, not rewritten
        except ModelError as exc:
            raise VersionError(f"version {target.name} cannot be used: {exc}") from None
        snapshot = target.path / RECORD_FILE
        try:
            src = sqlite3.connect(snapshot.resolve().as_uri() + "?mode=ro", uri=True)
            try:
                rows = list(src.execute("SELECT digest, label, step, learned_at FROM learned"))
            finally:
                src.close()
        except sqlite3.Error as exc:
            raise VersionError(f"version {target.name} has no readable learn record: {exc}") from None
        generations = [v.generation for v in list_versions(d)]
        try:
            generations.append(int(json.loads((d / SIDECAR_FILE).read_text()).get("generation", 0)))
        except (OSError, ValueError, AttributeError):
            pass
        model.generation = max(generations) + 1
        with LearnRecord(d) as record:
            record.begin()
            try:
                record.db.execute("DELETE FROM learned")
                record.db.executemany("INSERT INTO learned VALUES (?, ?, ?, ?)", rows)
                record.set_meta("generation", str(model.generation))
                save_model(model, d)
                new = record_version(d, "rollback", keep, record=record, restored_from=target)
                record.commit()
            except BaseException:
                record.rollback()
                raise
    return target, new
