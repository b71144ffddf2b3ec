"""Model persistence: joblib file + JSON sidecar in the model directory, written atomically.

    DIR/model.joblib   the SpamModel (temp file, fsync, rename)
    DIR/model.json     format version, library versions, counts, feature settings, sha256
                       of model.joblib (temp file, fsync, rename; written after the model)

A model is refused (ModelError) when the sidecar or model is missing, unreadable, has another
format version or another scikit-learn major.minor, or the model file's digest does not match
the sidecar: never silently used. A reader that races a writer between the two renames sees a
digest mismatch and retries briefly.

`export_state`/`import_state` give a portable, pickle-free .npz (for --backup/--restore).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from mailsift import __version__
from mailsift.classifier.model import ModelSettings, SpamModel

FORMAT_VERSION = 2  # 2: counts held as arrays, the sklearn estimator rebuilt on use
MODEL_FILE = "model.joblib"
SIDECAR_FILE = "model.json"


class ModelError(Exception):
    """A missing, corrupt or incompatible model."""


class UntrustedModel(ModelError):
    """A model (or model directory) another user could have written: never loaded, never replaced."""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def _versions() -> dict[str, str]:
    """Library versions, read from package metadata (importing scikit-learn costs ~1 s)."""
    versions = {"mailsift": __version__, "python": platform.python_version()}
    for dist in ("numpy", "scipy", "scikit-learn", "joblib"):
        versions[dist] = _version(dist)
    return versions


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by its path; best effort (a failure to open or sync is ignored)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Any) -> None:
    """Call write(fileobj) on a temp file beside `path`, fsync, rename over `path`."""
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o640)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_path(path.parent)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return _sha256_file(fh)


def _sha256_file(fh: Any) -> str:
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(1 << 20), b""):
        h.update(block)
    return h.hexdigest()


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_pickle_owner(path: Path, st: os.stat_result) -> None:
    """Refuse a pickle another user could have written (unpickling runs its code as us): it must
    belong to root or to this process's user and be writable by no group or other."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        owner = _user_name(st.st_uid)
        raise UntrustedModel(f"refusing model {path}: it is owned by {owner} (uid {st.st_uid}), not by "
                             f"{_user_name(me)}, and loading a pickle runs its owner's code as {_user_name(me)}; "
                             f"run this as {owner} (e.g. `runuser -u {owner} -- mailsift ...`)")
    if st.st_mode & 0o022:
        raise UntrustedModel(f"refusing model {path}: mode {st.st_mode & 0o7777:04o} lets users other than "
                             f"its owner {_user_name(st.st_uid)} write it: chmod go-w {path}")


def save_model(model: SpamModel, dbpath: str | Path) -> None:
    """Write the model and its sidecar atomically into the directory `dbpath`."""
    import joblib

    d = Path(dbpath)
    d.mkdir(parents=True, exist_ok=True)
    if model._nb is not None:  # noqa: SLF001
        model._nb.__dict__.pop("feature_log_prob_", None)  # noqa: SLF001
    target = d / MODEL_FILE
    # Uncompressed (~26 MB): zlib made the file 8 MB but copied the arrays while writing
    # (`mailsift learn` peak RSS 180 -> 163 MB without it) and slowed every load.
    atomic_write(target, lambda fh: joblib.dump(model, fh))
    sidecar = {
        "format_version": FORMAT_VERSION,
        "versions": _versions(),
        "saved_at": time.time(),
        "model_sha256": _sha256(target),
        **model.describe(),
    }
    data = json.dumps(sidecar, indent=2, sort_keys=True).encode()
    atomic_write(d / SIDECAR_FILE, lambda fh: fh.write(data + b"\n"))


def read_sidecar(dbpath: str | Path) -> dict[str, Any]:
    d = Path(dbpath)
    path = d / SIDECAR_FILE
    if not (d / MODEL_FILE).exists() and not path.exists():
        raise ModelError(f"no model in {d}: train one with `mailsift learn --spam/--ham ... --dbpath {d}`")
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model in {d} has no sidecar {SIDECAR_FILE}: refusing it") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model sidecar {path} is unreadable: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model sidecar {path} is not a JSON object")
    fmt = meta.get("format_version")
    if fmt != FORMAT_VERSION:
        raise ModelError(f"model in {d} has format version {fmt!r}, this mailsift reads {FORMAT_VERSION}: "
                         "restore a backup (`mailsift learn --restore FILE`) or retrain")
    return meta


def load_model(dbpath: str | Path, retries: int = 3) -> SpamModel:
    """Load and check the model in `dbpath`; raises ModelError, never returns a bad model."""
    last: ModelError | None = None
    for attempt in range(retries):
        try:
            return _load_once(Path(dbpath))
        except _Racy as exc:
            last = ModelError(str(exc))
            time.sleep(0.05 * (attempt + 1))
    assert last is not None
    raise last


class _Racy(ModelError):
    """Model and sidecar disagree; possibly a writer between its two renames."""


def check_model_dir(d: Path) -> None:
    """Refuse to work in a model directory that belongs to another user (other than root): its
    owner may plant links there, and the model in it is theirs to load. Raises UntrustedModel."""
    try:
        st = os.stat(d)
    except FileNotFoundError:
        return
    if st.st_uid not in (0, os.geteuid()):
        owner = _user_name(st.st_uid)
        raise UntrustedModel(f"refusing model directory {d}: it belongs to {owner} (uid {st.st_uid}), not to "
                             f"{_user_name(os.geteuid())}; run this as {owner} "
                             f"(e.g. `runuser -u {owner} -- mailsift ...`)")


def _load_once(d: Path) -> SpamModel:
    import joblib

    meta = read_sidecar(d)
    saved = str(meta.get("versions", {}).get("scikit-learn", "?"))
    here = _version("scikit-learn")
    if _major_minor(saved) != _major_minor(here):
        raise ModelError(f"model in {d} was saved with scikit-learn {saved}, this is "
                         f"{here}: restore a backup (`mailsift learn --restore FILE`) or retrain")
    path = d / MODEL_FILE
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
    with fh:  # checked, hashed and unpickled through one descriptor: nothing can swap it between
        check_pickle_owner(path, os.fstat(fh.fileno()))
        try:
            digest = _sha256_file(fh)
        except OSError as exc:
            raise ModelError(f"cannot read model {path}: {exc.strerror or exc}") from None
        if digest != meta.get("model_sha256"):
            raise _Racy(f"model {path} does not match its sidecar (corrupt or half-written): refusing it")
        try:
            fh.seek(0)
            model = joblib.load(fh)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
            raise ModelError(f"model {path} is corrupt: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, SpamModel):
        raise ModelError(f"{path} does not hold a mailsift SpamModel")
    _check(model, path)
    from mailsift.classifier.tokenize import TOKENIZER_VERSION

    if meta.get("tokenizer_version") != TOKENIZER_VERSION:
        logging.getLogger("mailsift.classifier").warning(
            "model in %s was trained with tokenizer version %s, this is %s: it works, but retrain "
            "(or relearn your folders) for full accuracy", d, meta.get("tokenizer_version"), TOKENIZER_VERSION)
    if (model.n_ham_, model.n_spam_) != (meta.get("n_ham"), meta.get("n_spam")):
        raise _Racy(f"model {path} counts differ from its sidecar: refusing it")
    model.refresh()
    return model


def _check(model: SpamModel, where: object) -> None:
    n = 1 << model.settings.hash_bits
    fc = getattr(model, "feature_count", None)
    cc = getattr(model, "class_count", None)
    if (not isinstance(fc, np.ndarray) or fc.shape != (2, n) or not isinstance(cc, np.ndarray)
            or cc.shape != (2,) or not isinstance(model.lr_coef, np.ndarray) or model.lr_coef.shape != (n,)):
        raise ModelError(f"model {where} has inconsistent shapes: refusing it")
    if not (np.isfinite(cc).all() and (cc >= 0).all() and np.isfinite(model.lr_intercept)):
        raise ModelError(f"model {where} has invalid counts: refusing it")


# -- portable backup ----------------------------------------------------------------------

def export_state(model: SpamModel, path: str | Path, record_rows: list[tuple[str, str, float]]) -> None:
    """A pickle-free .npz of the model's state and the learn record (for --backup)."""
    fc = model.feature_count
    nz = np.flatnonzero((fc[0] > 0) | (fc[1] > 0) | (model.lr_coef != 0))
    meta = {"format_version": FORMAT_VERSION, "kind": "mailsift-backup", "settings": asdict(model.settings),
            "lr_intercept": model.lr_intercept, "changed_at": model.changed_at, "versions": _versions(),
            "chars_intercept": model.chars.intercept, "chars_learned": model.chars.learned}
    chars = model.chars
    cnz = np.flatnonzero((chars.coef != 0) | (chars.g2 != 0))

    def write(fh: Any) -> None:
        np.savez_compressed(
            fh, meta=np.array(json.dumps(meta)), index=nz.astype(np.int64),
            ham=fc[0, nz], spam=fc[1, nz], lr=model.lr_coef[nz], class_count=model.class_count,
            prior_counts=model.prior_counts, chars_index=cnz.astype(np.int64), chars_coef=chars.coef[cnz],
            chars_g2=chars.g2[cnz],
            digests=np.array([r[0] for r in record_rows], dtype="U64"),
            labels=np.array([r[1] for r in record_rows], dtype="U4"),
            steps=np.array([r[2] for r in record_rows], dtype=np.float64),
        )

    atomic_write(Path(path), write)


def import_state(path: str | Path) -> tuple[SpamModel, list[tuple[str, str, float]]]:
    """Read a backup written by export_state; raises ModelError when it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("kind") != "mailsift-backup" or meta.get("format_version") != FORMAT_VERSION:
                raise ModelError(f"{path} is not a mailsift backup of format {FORMAT_VERSION}")
            known = {f.name for f in fields(ModelSettings)}
            settings = ModelSettings(**{k: v for k, v in meta["settings"].items() if k in known})
            model = SpamModel(settings)
            idx = z["index"]
            model.feature_count[0, idx] = z["ham"]
            model.feature_count[1, idx] = z["spam"]
            model.lr_coef[idx] = z["lr"]
            model.class_count[:] = z["class_count"]
            if "prior_counts" in z:
                model.prior_counts[:] = z["prior_counts"]
            if "chars_index" in z:
                cidx = z["chars_index"]
                model.chars.coef[cidx] = z["chars_coef"]
                model.chars.g2[cidx] = z["chars_g2"]
                model.chars.intercept = float(meta.get("chars_intercept", 0.0))
                model.chars.learned = int(meta.get("chars_learned", 0))
            model.lr_intercept = float(meta["lr_intercept"])
            model.changed_at = float(meta.get("changed_at", 0.0))
            rows = list(zip(z["digests"].tolist(), z["labels"].tolist(), z["steps"].tolist()))
    except ModelError:
        raise
    except FileNotFoundError:
        raise ModelError(f"backup {path} not found") from None
    except Exception as exc:  # noqa: BLE001 - any malformed archive
        raise ModelError(f"{path} is not a readable mailsift backup: {type(exc).__name__}: {exc}") from None
    _check(model, path)
    model.refresh()
    return model, rows
