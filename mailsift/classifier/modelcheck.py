"""The model directory's names, its sidecar, errors and the owner check, numpy-free (persist.py
and scorer.py share them)."""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

# 3: modelfile.py (a JSON header and raw arrays of the columns seen, no pickle);
# 2: a joblib pickle of SpamModel (model.joblib), converted to 3 on first load.
FORMAT_VERSION = 3
LEGACY_FORMAT = 2
MODEL_FILE = "model.bin"
LEGACY_MODEL_FILE = "model.joblib"
SIDECAR_FILE = "model.json"
LEGACY_BACKUP = "format2-backup"  # where conversion keeps the old model.joblib and model.json


class ModelError(Exception):
    """A missing, corrupt or incompatible model."""


class UntrustedModel(ModelError):
    """A model (or model directory) another user could have written: never loaded, never replaced."""


def _user_name(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def check_pickle_owner(path: str | Path, st: os.stat_result, pickle: bool = True) -> None:
    """Refuse a model another user could have written (unpickling a legacy one runs its code as
    us; any model decides where our mail goes): it must belong to root or to this process's
    user and be writable by no group or other."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        owner = _user_name(st.st_uid)
        why = (f"loading a pickle runs its owner's code as {_user_name(me)}" if pickle
               else f"its owner decides what {_user_name(me)} calls spam")
        raise UntrustedModel(f"refusing model {path}: it is owned by {owner} (uid {st.st_uid}), not by "
                             f"{_user_name(me)}, and {why}; "
                             f"run this as {owner} (e.g. `runuser -u {owner} -- mailsift ...`)")
    if st.st_mode & 0o022:
        raise UntrustedModel(f"refusing model {path}: mode {st.st_mode & 0o7777:04o} lets users other than "
                             f"its owner {_user_name(st.st_uid)} write it: chmod go-w {path}")


def read_sidecar(dbpath: str | Path, legacy: bool = False) -> dict[str, Any]:
    """The sidecar; ModelError unless it is of FORMAT_VERSION (or, with legacy, LEGACY_FORMAT)."""
    # os.path, not pathlib: a one-message `classify` would import pathlib for this alone
    d = os.fspath(dbpath)
    path = os.path.join(d, SIDECAR_FILE)
    if not any(os.path.exists(os.path.join(d, name)) for name in (MODEL_FILE, LEGACY_MODEL_FILE, SIDECAR_FILE)):
        raise ModelError(f"no model in {d}: train one with `mailsift learn --spam/--ham ... --dbpath {d}`")
    try:
        with open(path, encoding="utf-8") as fh:
            meta = json.loads(fh.read())
    except FileNotFoundError:
        raise ModelError(f"model in {d} has no sidecar {SIDECAR_FILE}: refusing it") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"model sidecar {path} is unreadable: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelError(f"model sidecar {path} is not a JSON object")
    fmt = meta.get("format_version")
    if fmt != FORMAT_VERSION and not (legacy and fmt == LEGACY_FORMAT):
        raise ModelError(f"model in {d} has format version {fmt!r}, this mailsift reads {FORMAT_VERSION}: "
                         "restore a backup (`mailsift learn --restore FILE`) or retrain")
    return meta
