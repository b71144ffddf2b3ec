"""Learning from what users file: Junk moves and $Junk/$NonJunk keywords train the classifier.

The store publishes every change with the folders' special use, so this needs no protocol code:
a `JunkLearner` subscribes to the store's events (IMAP, POP3 and outside changes alike) and

- a message COPYed, MOVEd or APPENDed into the `\\Junk` folder is learned as spam;
- a message moved (or copied) out of `\\Junk` into any folder but `\\Trash` is learned as ham;
- a message that gets the keyword `$Junk` (or `Junk`) is learned as spam, `$NonJunk` (or
  `NonJunk`) as ham.

LMTP filing into Junk (the milter's verdict) is not learned: that would teach the model what it
already believes. Learning goes through the classifier's Learner, so it is idempotent per message
(the learn record's digest: learned twice is a no-op, with the other label it moves) and is in
the record the nightly retraining reads; the model file is saved after each batch, and the milter
reloads a changed model.

Events arrive in the thread that made the change; they are only queued there. One worker thread
reads the messages through the store and learns them in batches (every `delay` seconds at most),
holding the model's learn lock only while it learns.

    learner = JunkLearner(store, dbpath="models").start()   # from `mailsift serve`
    ...
    learner.stop()
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("mailsift.junklearn")

JUNK = "\\Junk"
TRASH = "\\Trash"
SPAM_KEYWORDS = frozenset({"$junk", "junk"})
HAM_KEYWORDS = frozenset({"$nonjunk", "nonjunk"})
BY_USER = frozenset({"copy", "move", "append"})


def decide(ev: Any) -> str | None:
    """"spam", "ham" or None for one store event (mailsift.store.events.Event)."""
    if ev.uid is None:
        return None
    if ev.kind == "new":
        if ev.special_use == JUNK and ev.via in BY_USER and ev.source_special_use != JUNK:
            return "spam"
        if (ev.source_special_use == JUNK and ev.via in ("copy", "move")
                and ev.special_use not in (JUNK, TRASH)):
            return "ham"
        return None
    if ev.kind == "flags":
        added = {f.lower() for f in ev.added}
        if added & SPAM_KEYWORDS:
            return "spam"
        if added & HAM_KEYWORDS:
            return "ham"
    return None


@dataclass(frozen=True)
class Job:
    user: str
    folder: str
    uid: int
    label: str


class JunkLearner:
    def __init__(self, store: Any, dbpath: str | Path, delay: float = 2.0, max_batch: int = 500) -> None:
        self.store = store
        self.dbpath = Path(dbpath)
        self.delay = delay
        self.max_batch = max_batch
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._sub: Any = None
        self._idle = threading.Event()
        self._idle.set()
        self.learned = 0     # messages new to the model (or moved to the other label)
        self.skipped = 0     # already learned with that label
        self.failed = 0      # could not be read or learned

    def start(self) -> "JunkLearner":
        self._sub = self.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._run, name="junk-learner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """For tests and shutdown: True once everything queued so far has been learned."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.02)
        return False

    # -- the store's thread: decide and queue, nothing slow -----------------------------------
    def _on_event(self, ev: Any) -> None:
        label = decide(ev)
        if label is not None:
            self._idle.clear()
            self._queue.put(Job(ev.user, ev.folder, ev.uid, label))

    # -- the worker ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            self._idle.clear()
            jobs = [job]
            deadline = time.monotonic() + self.delay
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            try:
                self._learn(jobs)
            except Exception:  # noqa: BLE001 - learning must never take the server down
                self.failed += len(jobs)
                log.exception("learning %d messages failed", len(jobs))
            finally:
                if self._queue.empty():
                    self._idle.set()
            if stop:
                return

    def _learn(self, jobs: list[Job]) -> None:
        from mailsift.classifier.learn import Learner  # heavy (numpy): only when there is work

        items: list[tuple[str, bytes | None, str]] = []
        for job in jobs:
            try:
                raw = self.store.mailbox(job.user, create=False).read(job.folder, job.uid)
            except Exception:  # noqa: BLE001 - gone meanwhile (expunged, moved on): nothing to learn
                self.failed += 1
                continue
            items.append((f"{job.user}/{job.folder}/{job.uid}", raw, job.label))
        if not items:
            return
        with Learner(self.dbpath) as learner:
            stats = learner.learn_labelled(items)
            learner.save()
        self.learned += stats.learned
        self.skipped += stats.skipped
        log.info("learned from users: %d new (%d moved to the other label), %d already known",
                 stats.learned, stats.moved, stats.skipped)
