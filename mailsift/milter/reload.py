"""The model the milter scores with, swapped for a new one within seconds of an atomic rename.

libmilter owns SIGHUP, so a watcher thread polls the identity (inode, mtime, size) of the model
file and its sidecar every `interval` seconds and loads a new pair in the background;
connections keep scoring with the old model until the new one is ready, then the reference is
swapped. A writer renames the model file, then the sidecar: a load between the two (refused: they
do not match) is tried again once the sidecar has changed too.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable

from mailsift.heap import map_large_allocations

log = logging.getLogger("mailsift.milter.reload")

FileId = tuple[int, ...]


def _file_id(path: Path) -> FileId | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


class ModelHolder:
    """Holds the current model (or None with a reason) and reloads it when the file changes."""

    def __init__(self, dbpath: str | Path, interval: float = 1.0,
                 loader: Callable[[Path], Any] | None = None) -> None:
        self.dbpath = Path(dbpath)
        self.interval = interval
        self._loader = loader
        self._lock = threading.Lock()
        self._state: tuple[Any, str | None] = (None, "no model")
        self._loaded_id: FileId | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reloads = 0

    @property
    def model_file(self) -> Path:
        from mailsift.classifier.api import MODEL_FILE
        return self.dbpath / MODEL_FILE

    def _pair_id(self, path: Path) -> FileId | None:
        """The model file's identity and its sidecar's (None without a model file)."""
        from mailsift.classifier.api import SIDECAR_FILE

        fid = _file_id(path)
        if fid is None:
            return None
        return fid + (_file_id(self.dbpath / SIDECAR_FILE) or ())

    def _load(self, path: Path) -> Any:
        if self._loader is not None:
            return self._loader(path)
        from mailsift.classifier.api import load_model
        return load_model(self.dbpath)

    def current(self) -> tuple[Any, str | None]:
        """(model, None) or (None, reason)."""
        return self._state

    def check(self) -> bool:
        """Load the model file if it changed since the last load; True when a new one is in use."""
        try:
            path = self.model_file
        except ImportError as exc:  # the classifier is not installed: run without a model
            self._state = (None, f"classifier unavailable: {exc}")
            return False
        fid = self._pair_id(path)
        if fid == self._loaded_id:
            return False
        with self._lock:
            if fid is None:
                if self._state[0] is not None:
                    log.warning("model file %s disappeared; keeping the model in memory", path)
                else:
                    self._state = (None, "no model")
                self._loaded_id = None
                return False
            try:
                model = self._load(path)
            except Exception as exc:  # ModelError or worse: keep what we have
                self._loaded_id = fid  # do not retry a broken pair every second
                if self._state[0] is None:
                    self._state = (None, "model unreadable")
                log.error("cannot load model %s: %s; %s", path, exc,
                          "keeping the previous model" if self._state[0] is not None else "scoring disabled")
                return False
            # The file may have been replaced while we read it; the next check catches that.
            self._loaded_id = fid
            self._state = (model, None)
            self.reloads += 1
            log.info("model %s loaded (load #%d)", path, self.reloads)
            return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except Exception:  # never let the watcher die
                log.exception("model watcher failed")

    def start(self) -> "ModelHolder":
        map_large_allocations()  # each reload frees a model's arrays: give them back (mailsift/heap.py)
        self.check()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
