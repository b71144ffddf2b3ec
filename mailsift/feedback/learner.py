"""The feedback learner: users' Junk moves and keywords train the live model while `mailsift serve` runs.

    handle = start_learner(store, config.feedback, config.classifier.dbpath)   # from `mailsift serve`
    ...
    handle.stop()                                                               # at shutdown

The store calls `_on_event` in the thread that made the change: it only applies the pure rules
(rules.action_for) and queues the action. One worker thread gathers actions for up to
`save_interval` seconds after the first, then, holding the model directory's learn lock
(the same flock `mailsift learn` and `mailsift retrain` take):
  1. loads the model and learn record from disk (so whatever `mailsift learn` saved meanwhile is
     the base: nothing it did is overwritten),
  2. reads each message through the store API and learns it with sa-learn semantics (the learn
     record's digest: the same message again is a no-op, with the other label it moves; of
     several judgements about one message in a batch the last wins),
  3. saves the model atomically (the milter notices the new sidecar and reloads),
  4. records each judgement and the message in the feedback spool (spool.py) for `mailsift retrain`.
A message gone before the worker reads it (expunged, moved on) is skipped. A model that cannot
be loaded or saved is logged; the judgements still go to the spool, so a retrain learns them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from mailsift.feedback.rules import LearnAction, action_for
from mailsift.feedback.settings import FeedbackSettings
from mailsift.feedback.spool import Judgement, Spool
from mailsift.ops import metrics

log = logging.getLogger("mailsift.feedback")


class Handle(Protocol):
    def stop(self, timeout: float = 30.0) -> None: ...


class FeedbackLearner:
    def __init__(self, store: Any, dbpath: str | Path, save_interval: float = 5.0,
                 spool_max_messages: int = 20000, max_batch: int = 1000) -> None:
        self.store = store
        self.dbpath = Path(dbpath)
        self.save_interval = save_interval
        self.max_batch = max_batch
        self.spool = Spool(self.dbpath, spool_max_messages)
        self._queue: queue.Queue[LearnAction | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._sub: Any = None
        # Where queued messages went since: a message moved on before the worker reads it (marked
        # junk, then thrown into Trash at once) is read where it is now. (user, folder, uid) keys.
        self._loc_lock = threading.Lock()
        self._watched: set[tuple[str, str, int]] = set()
        self._moved: dict[tuple[str, str, int], tuple[str, str, int]] = {}
        # Counters (read them after wait_idle()):
        self.learned = 0   # new to the model, including moved ones
        self.moved = 0     # had the other label
        self.skipped = 0   # already learned with that label
        self.missing = 0   # gone before it could be read
        self.failed = 0    # the model could not be loaded or saved (kept in the spool)
        self.saves = 0     # model files written

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "FeedbackLearner":
        self._thread = threading.Thread(target=self._run, name="feedback-learner", daemon=True)
        self._thread.start()
        self._sub = self.store.subscribe(self._on_event)
        log.info("learning from users' Junk moves into %s (saved every %.0f s at most)", self.dbpath,
                 self.save_interval)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Unsubscribe, learn what is queued (without waiting out the interval), end the worker."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("feedback learner did not finish within %.0f s", timeout)
            self._thread = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every action queued so far is learned and saved (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._queue.unfinished_tasks == 0:
                return True
            time.sleep(0.02)
        return False

    # -- the store's thread: decide and queue ---------------------------------------------------
    def _on_event(self, ev: Any) -> None:
        if ev.kind == "new" and ev.via == "move" and ev.source_uid is not None:
            src = (ev.user, ev.source_folder, ev.source_uid)
            with self._loc_lock:
                if src in self._watched:
                    dst = (ev.user, ev.folder, ev.uid)
                    self._moved[src] = dst
                    self._watched.add(dst)
        action = action_for(ev)
        if action is not None:
            with self._loc_lock:
                self._watched.add((action.user, action.folder, action.uid))
                self._queue.put(action)

    def _where(self, action: LearnAction) -> tuple[str, str, int]:
        loc = (action.user, action.folder, action.uid)
        with self._loc_lock:
            for _ in range(1000):
                nxt = self._moved.get(loc)
                if nxt is None:
                    break
                loc = nxt
        return loc

    def _forget_locations(self) -> None:
        with self._loc_lock:
            if self._queue.empty():  # nothing queued refers to them any more
                self._watched.clear()
                self._moved.clear()

    # -- the worker -----------------------------------------------------------------------------
    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                self._queue.task_done()
                return
            batch = [first]
            deadline = time.monotonic() + self.save_interval
            while len(batch) < self.max_batch:
                wait = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    self._queue.task_done()
                    break
                batch.append(nxt)
            try:
                self._learn(batch)
            except Exception:  # noqa: BLE001 - learning must never take the server down
                log.exception("learning %d judgement(s) from users failed", len(batch))
            finally:
                self._forget_locations()
                for _ in batch:
                    self._queue.task_done()

    def _read(self, action: LearnAction) -> bytes | None:
        from mailsift.store.api import NoSuchFolder, NoSuchMessage

        user, folder, uid = self._where(action)
        try:
            return self.store.mailbox(user, create=False).read(folder, uid, crlf=False)
        except (NoSuchMessage, NoSuchFolder):
            return None

    def _learn(self, batch: list[LearnAction]) -> None:
        from mailsift.classifier.persist import ModelError
        from mailsift.classifier.record import message_digest

        # The user's latest judgement about each message wins.
        latest: dict[str, tuple[LearnAction, bytes]] = {}
        for action in batch:
            raw = self._read(action)
            if raw is None:
                self.missing += 1
                log.info("feedback: %s/%s uid %d is gone; not learned", action.user, action.folder, action.uid)
                continue
            digest = message_digest(raw)
            latest.pop(digest, None)
            latest[digest] = (action, raw)
        if not latest:
            return
        now = time.time()
        try:
            judgements = self._learn_locked(latest, now)
        except (ModelError, OSError) as exc:
            self.failed += len(latest)
            log.error("feedback: cannot learn into %s: %s; %d judgement(s) kept for `mailsift retrain`",
                      self.dbpath, exc, len(latest))
            self._spool_unlocked([(Judgement(now, a.user, d, a.label, a.reason, "not-learned"), raw)
                                  for d, (a, raw) in latest.items()])
            for _d, (a, _raw) in latest.items():
                metrics.learn_event(a.reason, a.label, "not-learned")
            return
        for j in judgements:
            metrics.learn_event(j.reason, j.label, j.outcome)
            log.info("feedback: %s %s (%s): %s", j.user, j.label, j.reason, j.outcome)

    def _learn_locked(self, latest: dict[str, tuple[LearnAction, bytes]], now: float) -> list[Judgement]:
        from mailsift.classifier.learn import Learner

        with Learner(self.dbpath) as learner:  # flock + fresh load of the model and record
            judgements: list[Judgement] = []
            items = []
            for digest, (action, raw) in latest.items():
                known = learner.record.get(digest)
                outcome = "skipped" if known and known[0] == action.label else ("moved" if known else "learned")
                judgements.append(Judgement(now, action.user, digest, action.label, action.reason, outcome))
                items.append((f"{action.user}/{action.folder}/{action.uid}", raw, action.label))
            stats = learner.learn_labelled(items)
            if learner.dirty:
                learner.save()
                self.saves += 1
            self.spool.record(zip(judgements, (raw for _a, raw in latest.values())))
        self.learned += stats.learned
        self.moved += stats.moved
        self.skipped += stats.skipped
        return judgements

    def _spool_unlocked(self, items: list[tuple[Judgement, bytes]]) -> None:
        import fcntl

        from mailsift.classifier.learn import LOCK_FILE

        try:
            self.dbpath.mkdir(parents=True, exist_ok=True)
            with open(self.dbpath / LOCK_FILE, "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                self.spool.record(items)
        except OSError as exc:
            log.error("feedback: cannot write the feedback spool in %s: %s", self.dbpath, exc)


class _Off:
    """The handle when learning from users is disabled."""

    def stop(self, timeout: float = 30.0) -> None:
        return None


def start_learner(store: Any, settings: FeedbackSettings, classifier_dbpath: str = "models") -> Handle:
    """Start learning from `store`'s events into the model dir (settings.dbpath, else
    classifier_dbpath). Returns a handle whose stop() learns what is pending and ends the worker."""
    if not settings.enabled:
        log.info("learning from users' Junk moves is off ([feedback] enabled = false)")
        return _Off()
    return FeedbackLearner(store, settings.model_dir(classifier_dbpath), settings.save_interval,
                           settings.spool_max_messages).start()
