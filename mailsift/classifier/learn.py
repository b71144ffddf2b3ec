"""sa-learn semantics over the model and its learn record, and the message sources.

    with Learner(dbpath) as learner:              # exclusive lock on the model dir
        stats = learner.learn_many(messages, "spam")   # known -> skip, other label -> move
        learner.forget(raw)
        learner.save()                            # model (atomic) + record, same generation,
                                                  # and a version in DBPATH/versions/ (versions.py)

Consistency: the record's changes are one SQLite transaction, committed right after the model
file is renamed into place; both carry the same generation number. A run killed between the
rename and the commit leaves the record one generation behind: `--dump` reports it.
"""

from __future__ import annotations

import fcntl
import functools
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mailsift.classifier.model import SpamModel
from mailsift.classifier.persist import (LEGACY_MODEL_FILE, MODEL_FILE, SIDECAR_FILE, ModelError, check_model_dir,
                                        load_model, save_model)
from mailsift.classifier.record import RECORD_FILE, LearnRecord, message_digest
from mailsift.classifier.sources import (  # noqa: F401 - re-exported
    MAX_MESSAGE_BYTES,
    count_paths,
    iter_dir,
    iter_maildir,
    iter_mbox,
    iter_paths,
)
from mailsift.classifier.versions import DEFAULT_KEEP, record_version

LOCK_FILE = ".learn.lock"
BATCH = 256
# The label of a forgotten message in the share outbox (learned ones carry "spam" or "ham").
FORGET = "forget"


@dataclass
class LearnStats:
    examined: int = 0
    learned: int = 0  # new to the model (including moved ones)
    moved: int = 0  # had the other label
    skipped: int = 0  # already learned with this label
    forgotten: int = 0
    unknown: int = 0  # --forget of a message never learned
    unreadable: list[str] = field(default_factory=list)


def has_model(dbpath: str | Path) -> bool:
    d = Path(dbpath)
    return any((d / name).exists() for name in (MODEL_FILE, LEGACY_MODEL_FILE, SIDECAR_FILE))


class Learner:
    def __init__(self, dbpath: str | Path, create: bool = True, source: str | None = "learn",
                 keep_versions: int = DEFAULT_KEEP, outbox: Any = None) -> None:
        """source: what each save() is recorded as in the model history (None: not recorded,
        for scratch directories); keep_versions: how many versions the history keeps; outbox:
        a mailsift.share.outbox.Outbox that each learned or forgotten message also goes to (share
        on)."""
        self.dbpath = Path(dbpath)
        check_model_dir(self.dbpath)  # before anything is opened in another user's directory
        self.source = source
        self.keep_versions = keep_versions
        self.outbox = outbox
        self.dbpath.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.dbpath / LOCK_FILE, "a+")  # noqa: SIM115 - held for the run
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            if has_model(self.dbpath):
                self.model: SpamModel = load_model(self.dbpath)
            elif create:
                self.model = SpamModel()
            else:
                raise ModelError(f"no model in {self.dbpath}")
            self.record = LearnRecord(self.dbpath)
            self.record.begin()
        except BaseException:
            self._lock.close()
            raise
        self.dirty = False

    def __enter__(self) -> Learner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.outbox is not None:
                self.outbox.rollback()  # what save() did not commit
            self.record.rollback()
            self.record.close()
        finally:
            self._lock.close()

    # -- learning -------------------------------------------------------------------------
    def learn_many(self, messages: Iterable[tuple[str, bytes | None]], label: str,
                   stats: LearnStats | None = None, progress: object = None, jobs: int = 1) -> LearnStats:
        """Learn (name, raw) pairs with `label`; raw None means unreadable."""
        return self.learn_labelled(((name, raw, label) for name, raw in messages), stats, progress, jobs)

    def learn_labelled(self, messages: Iterable[tuple[str, bytes | None, str]],
                       stats: LearnStats | None = None, progress: object = None, jobs: int = 1) -> LearnStats:
        """Learn (name, raw, label) triples, in order. jobs > 1: messages are tokenised in that
        many forked worker processes (tokenising is most of the cost), learned here in order."""
        stats = stats or LearnStats()
        batch: list[tuple[np.ndarray, str]] = []
        chars: list[np.ndarray | None] = []
        senders: list[tuple[int | None, ...]] = []
        digests: list[str] = []
        pending: set[str] = set()
        for name, label, raw, prepared in self._prepared(messages, jobs):
            stats.examined += 1
            if prepared is None:
                stats.unreadable.append(name)
            else:
                digest, features = prepared
                known = self.record.get(digest)
                if digest in pending or (known is not None and known[0] == label):
                    stats.skipped += 1
                else:
                    idx, cidx, sender = features()
                    if known is not None:  # learned with the other label: move it
                        self.model.unlearn_features(idx, known[0], known[1], cidx, sender)
                        stats.moved += 1
                    batch.append((idx, label))
                    if self.outbox is not None and raw is not None:
                        self.outbox.add(digest, label, raw, self.source or "learn")
                    chars.append(cidx)
                    senders.append(sender)
                    digests.append(digest)
                    pending.add(digest)
                    stats.learned += 1
            if len(batch) >= BATCH:
                self._flush(batch, digests, chars, senders)
            if progress is not None:
                progress(stats)  # type: ignore[operator]
        self._flush(batch, digests, chars, senders)
        return stats

    def _prepared(self, messages: Iterable[tuple[str, bytes | None, str]], jobs: int
                  ) -> Iterator[tuple[str, str, bytes | None, tuple[str, Callable[[], Features]] | None]]:
        """(name, label, raw, (digest, features) or None when unreadable), in order; features()
        gives the message's (word columns, 4-gram columns, sender reputation keys). With workers, raw is kept only for
        the share outbox (None otherwise: the bytes stay in the workers)."""
        if jobs <= 1:
            model = self.model
            for name, raw, label in messages:
                if raw is None:
                    yield name, label, None, None
                else:
                    yield name, label, raw, (message_digest(raw), functools.partial(_features, model, raw))
            return
        import collections
        import multiprocessing

        in_flight: collections.deque[bytes | None] = collections.deque()

        def feed() -> Iterator[tuple[str, bytes | None, str]]:
            for item in messages:  # the pool takes them in order, results come back in order
                if self.outbox is not None:
                    in_flight.append(item[1])
                yield item

        global _WORKER_MODEL
        _WORKER_MODEL = self.model  # forked workers inherit it
        try:
            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                # chunks of 32: the pool's threads here cost half what chunks of 8 did (measured)
                for name, label, done in pool.imap(_prepare_in_worker, feed(), chunksize=32):
                    raw = in_flight.popleft() if self.outbox is not None else None
                    if done is None:
                        yield name, label, None, None
                    else:
                        digest, features = done
                        yield name, label, raw, (digest, functools.partial(_given, features))
        finally:
            _WORKER_MODEL = None

    def _flush(self, batch: list[tuple[np.ndarray, str]], digests: list[str],
               chars: list[np.ndarray | None], senders: list[tuple[int | None, ...]]) -> None:
        if not batch:
            return
        steps = self.model.learn_batch(batch, chars, senders)
        for digest, (_, label), step in zip(digests, batch, steps):
            self.record.put(digest, label, step)
        batch.clear()
        digests.clear()
        chars.clear()
        senders.clear()
        self.dirty = True

    def forget_many(self, messages: Iterable[tuple[str, bytes | None]], stats: LearnStats | None = None,
                    progress: object = None) -> LearnStats:
        stats = stats or LearnStats()
        for name, raw in messages:
            stats.examined += 1
            if raw is None:
                stats.unreadable.append(name)
            else:
                digest = message_digest(raw)
                known = self.record.get(digest)
                if known is None:
                    stats.unknown += 1
                else:
                    self.model.unlearn(raw, known[0], known[1])
                    self.record.delete(digest)
                    if self.outbox is not None:
                        self.outbox.add(digest, FORGET, raw, self.source or "learn")
                    stats.forgotten += 1
                    self.dirty = True
            if progress is not None:
                progress(stats)  # type: ignore[operator]
        return stats

    def save(self) -> None:
        """Write the model atomically, then commit the record (same generation)."""
        if not self.dirty:
            return
        if self.outbox is not None:  # shared before it is saved: a crash between loses nothing
            self.outbox.commit()
        self.model.generation += 1
        self.record.set_meta("generation", str(self.model.generation))
        save_model(self.model, self.dbpath)
        if self.source is not None:
            record_version(self.dbpath, self.source, self.keep_versions, record=self.record)
        self.record.commit()
        self.record.begin()
        self.dirty = False


Features = tuple[np.ndarray, "np.ndarray | None", "tuple[int | None, ...]"]
_WORKER_MODEL: SpamModel | None = None


def _features(model: SpamModel, raw: bytes) -> Features:
    idx, _ = model.features(raw)
    return idx, model.char_features(raw), model.sender_keys(raw)


def _given(features: Features) -> Features:
    return features


def _prepare_in_worker(item: tuple[str, bytes | None, str]) -> tuple[str, str, tuple[str, Features] | None]:
    name, raw, label = item
    if raw is None:
        return name, label, None
    assert _WORKER_MODEL is not None
    return name, label, (message_digest(raw), _features(_WORKER_MODEL, raw))


def default_jobs() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def clear(dbpath: str | Path) -> None:
    """Remove the model, its sidecar and the learn record (under the learn lock)."""
    d = Path(dbpath)
    if not d.is_dir():
        return
    with open(d / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name in (SIDECAR_FILE, MODEL_FILE, LEGACY_MODEL_FILE, RECORD_FILE, RECORD_FILE + "-wal", RECORD_FILE + "-shm"):
            try:
                os.unlink(d / name)
            except FileNotFoundError:
                pass


# -- message sources (sources.py, numpy-free: `mailsift classify` reads them too) --------

class Progress:
    """A one-line progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self, total: int | None, verb: str, stream: object = None) -> None:
        self.total = total
        self.verb = verb
        self.stream = stream or sys.stderr
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, stats: LearnStats, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        n = stats.examined
        rate = n / max(now - self.start, 1e-6)
        if self.total:
            width = 30
            done = min(width, int(width * n / self.total))
            bar = "#" * done + "." * (width - done)
            line = f"\r{self.verb} [{bar}] {n}/{self.total} {rate:.0f} msg/s"
        else:
            line = f"\r{self.verb} {n} messages {rate:.0f} msg/s"
        self.stream.write(line)  # type: ignore[attr-defined]
        self.stream.flush()  # type: ignore[attr-defined]

    def finish(self, stats: LearnStats) -> None:
        self(stats, force=True)
        self.stream.write("\n")  # type: ignore[attr-defined]
        self.stream.flush()  # type: ignore[attr-defined]
