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

Implicit feedback (implicit.py) sees the same events and remembers what delivery and APPEND
filed: the store's thread queues the events that can matter to it (ImplicitTracker.wants; at
most MAX_TRACK_BACKLOG waiting, beyond which they are dropped and logged), and a tracker thread
records what arrived in the last TRACK_DELAY in one transaction (all of it before a stop). A
sweeper thread (every SWEEP_INTERVAL, or at once when woken) queues the confirmations
that are due, as LearnActions marked implicit, into the same worker. The daily cap per user
(max_per_user_day) is applied in step 2: a judgement that would change the model while its
user's count for the UTC day is full is deferred (state.py's queue, the journal's `deferred`),
and the sweeper hands deferred judgements back on a later day within that day's cap.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from mailsift.feedback.clock import Clock, clock_from_env
from mailsift.feedback.implicit import ImplicitTracker
from mailsift.feedback.rules import LearnAction, action_for
from mailsift.feedback.settings import FeedbackSettings
from mailsift.feedback.spool import MAX_MESSAGE_BYTES, Judgement, Spool
from mailsift.feedback.state import State, day_of
from mailsift.ops import metrics

log = logging.getLogger("mailsift.feedback")

# How often implicit confirmations and deferred judgements are looked for (real seconds); a
# confirmation made at once (a reply, a move into a user folder) wakes the sweeper earlier.
SWEEP_INTERVAL = 60.0
TEST_SWEEP_INTERVAL = 0.2   # with the test clock (clock.py), which tests advance by days
# The tracker records the changes that arrived in this long in one transaction (seconds): what a
# crash loses beyond what is queued (implicit.py). Under load that is tens of changes per commit.
TRACK_DELAY = 0.1
# At most this many changes wait for the tracker, and it records at most this many per transaction.
MAX_TRACK_BACKLOG = 50000
MAX_TRACK_BATCH = 2000
# A user's deferred queue holds at most this many days of their cap; beyond it judgements are
# journalled (with the message, in the spool) and counted as dropped, not queued.
DEFERRED_DAYS = 7


class Handle(Protocol):
    def stop(self, timeout: float = 30.0) -> None: ...


class FeedbackLearner:
    def __init__(self, store: Any, dbpath: str | Path, save_interval: float = 5.0,
                 spool_max_messages: int = 20000, max_batch: int = 1000, *,
                 max_per_user_day: int = 0, confirm_after: float | None = None,
                 opted_out: Callable[[str], bool] = lambda user: False, clock: Clock = time.time,
                 sweep_interval: float = SWEEP_INTERVAL, keep_versions: int = 5, share: bool = False,
                 self_train: bool = False, track_delay: float = TRACK_DELAY) -> None:
        """confirm_after (seconds): learn from what users keep (implicit.py); None = off.
        max_per_user_day: the daily cap per user (0 = none). clock: now, in epoch seconds.
        share: each learned judgement also goes to the share outbox (mailsift/share/).
        self_train: what LMTP delivered is learned with the model's pseudo-labels (_self_train).
        track_delay: the implicit tracker's batching (TRACK_DELAY)."""
        self.store = store
        self.dbpath = Path(dbpath)
        self.save_interval = save_interval
        self.keep_versions = keep_versions  # [classifier] keep_versions: the model history
        self.share = share
        self.max_batch = max_batch
        self.spool = Spool(self.dbpath, spool_max_messages)
        self.max_per_user_day = max_per_user_day
        self.clock = clock
        self.sweep_interval = sweep_interval
        self.state: State | None = None
        self.tracker: ImplicitTracker | None = None
        if confirm_after is not None or max_per_user_day:
            try:
                self.state = State(self.dbpath)
                if self.state.ready():
                    self.state.reset_emitted()
            except (OSError, sqlite3.Error) as exc:
                log.error("feedback: cannot open %s/feedback/state.sqlite (%s): no implicit feedback and no "
                          "daily cap until it can", self.dbpath, exc)
                self.state = None
        if confirm_after is not None and self.state is not None:
            self.tracker = ImplicitTracker(store, self.state, clock, confirm_after, opted_out)
            self.tracker.wake = self._wake_sweeper
        self._sweep_wake = threading.Event()
        self._sweeper: threading.Thread | None = None
        # Events for the tracker, handled in its own thread: the store's thread (and the main
        # process's fan-out of the IMAP workers' events, which waits for subscribers) pays an
        # append, and wakes the tracker only when it sleeps (perf: a wake-up per change cost more
        # than recording it).
        self._events: deque[Any] = deque()
        self.track_delay = track_delay
        self._track_wake = threading.Event()
        self._track_stop = threading.Event()
        self._tracking = False           # the tracker holds events taken from _events
        self._track_dropped = 0          # over MAX_TRACK_BACKLOG (logged)
        self._track_dropped_logged = 0.0
        self._tracker_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._queue: queue.Queue[LearnAction | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._sub: Any = None
        # Where queued messages went since: a message moved on before the worker reads it (marked
        # junk, then thrown into Trash at once) is read where it is now. (user, folder, uid) keys.
        self._loc_lock = threading.Lock()
        self._watched: set[tuple[str, str, int]] = set()
        self._moved: dict[tuple[str, str, int], tuple[str, str, int]] = {}
        from mailsift.classifier.evaluate import SELF_TRAIN_KEPT  # what evaluate models

        self.self_train = self_train
        self._delivered: deque[tuple[str, str, int]] = deque(maxlen=SELF_TRAIN_KEPT)
        # Counters (read them after wait_idle()):
        self.learned = 0   # new to the model, including moved ones
        self.moved = 0     # had the other label
        self.skipped = 0   # already learned with that label
        self.missing = 0   # gone before it could be read
        self.failed = 0    # the model could not be loaded or saved (kept in the spool)
        self.saves = 0     # model files written
        self.deferred = 0  # over a user's daily cap: kept for a later day
        self.self_trained = 0  # deliveries learned with a pseudo-label

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "FeedbackLearner":
        self._thread = threading.Thread(target=self._run, name="feedback-learner", daemon=True)
        self._thread.start()
        if self.tracker is not None:
            self._tracker_thread = threading.Thread(target=self._track, name="feedback-tracker", daemon=True)
            self._tracker_thread.start()
        self._sub = self.store.subscribe(self._on_event)
        if self.state is not None:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="feedback-sweeper", daemon=True)
            self._sweeper.start()
        log.info("learning from users' Junk moves into %s (saved every %.0f s at most)", self.dbpath,
                 self.save_interval)
        if self.tracker is not None:
            log.info("learning from what users keep: confirmed after %.0f s", self.tracker.confirm_after)
        if self.max_per_user_day:
            log.info("at most %d judgements per user per day; the excess is deferred", self.max_per_user_day)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Unsubscribe, learn what is queued (without waiting out the interval), end the worker."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        if self._tracker_thread is not None:  # record every change seen so far
            self._track_stop.set()
            self._track_wake.set()
            self._tracker_thread.join(timeout)
            if self._tracker_thread.is_alive():
                log.warning("feedback tracker did not finish within %.0f s", timeout)
            self._tracker_thread = None
        self._stopping.set()
        self._sweep_wake.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
            self._sweeper = None
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("feedback learner did not finish within %.0f s", timeout)
            self._thread = None
        if self.state is not None:
            self.state.close()
            self.state = None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every change seen so far is tracked and every action queued so far is
        learned and saved (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            # _events before _tracking: the tracker marks itself busy before it takes any
            if not self._events and not self._tracking and self._queue.unfinished_tasks == 0:
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
        if self.self_train and ev.kind == "new" and ev.via == "deliver" and ev.uid is not None:
            with self._loc_lock:
                self._delivered.append((ev.user, ev.folder, ev.uid))
        action = action_for(ev)
        if action is not None:
            self._enqueue(action)
        if self.tracker is not None and self.tracker.wants(ev):
            if len(self._events) >= MAX_TRACK_BACKLOG:
                self._dropped_for_tracker()
                return
            self._events.append(ev)
            if not self._track_wake.is_set():
                self._track_wake.set()

    def _dropped_for_tracker(self) -> None:
        self._track_dropped += 1
        now = time.monotonic()
        if now - self._track_dropped_logged >= 60:
            self._track_dropped_logged = now
            log.warning("feedback: %d change(s) waiting to be tracked; %d dropped so far (implicit feedback "
                        "learns less from them)", len(self._events), self._track_dropped)

    def _track(self) -> None:
        """The tracker thread: every TRACK_DELAY at most, what arrived, in one transaction."""
        assert self.tracker is not None
        while True:
            self._track_wake.wait()
            if not self._track_stop.is_set():
                self._track_stop.wait(self.track_delay)  # gather a batch (a stop ends the wait)
            self._track_wake.clear()
            while self._events:
                self._tracking = True
                batch = [self._events.popleft() for _ in range(min(len(self._events), MAX_TRACK_BATCH))]
                try:
                    self.tracker.on_events(batch)
                except Exception:  # noqa: BLE001 - never take the server down
                    log.exception("feedback: recording %d change(s) for implicit feedback failed", len(batch))
                finally:
                    self._tracking = False
            if self._track_stop.is_set():
                return

    def _enqueue(self, action: LearnAction) -> None:
        with self._loc_lock:
            self._watched.add((action.user, action.folder, action.uid))
            self._queue.put(action)

    # -- the sweeper: implicit confirmations and deferred judgements that are due ---------------
    def _wake_sweeper(self) -> None:
        self._sweep_wake.set()

    def _sweep_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - never take the server down
                log.exception("feedback: the sweep failed")
            self._sweep_wake.wait(self.sweep_interval)
            self._sweep_wake.clear()

    def sweep(self) -> int:
        """Queue what is due: implicit confirmations, and deferred judgements of users with room
        left in today's cap. Returns how many actions were queued."""
        state = self.state
        if state is None or not state.ready():
            return 0
        actions = self.tracker.sweep() if self.tracker is not None else []
        day = day_of(self.clock())
        for user in state.deferred_users():
            room = (self.max_per_user_day - state.count(user, day)) if self.max_per_user_day else self.max_batch
            if room <= 0:
                continue
            rows = state.oldest_deferred(user, min(room, self.max_batch))
            state.mark_emitted("deferred", [d.id for d in rows])
            actions += [LearnAction(d.user, d.folder, d.uid, d.label, d.reason,  # type: ignore[arg-type]
                                    implicit=d.implicit, deferred_id=d.id) for d in rows]
        for action in actions:
            self._enqueue(action)
        return len(actions)

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

        if self.state is not None:  # kept bytes: spam deleted from Junk, a deferred judgement
            if action.pending_id is not None:
                raw = self.state.pending_raw(action.pending_id)
                if raw is not None:
                    return raw
            if action.deferred_id is not None:
                raw = self.state.deferred_raw(action.deferred_id)
                if raw is not None:
                    return raw
        user, folder, uid = self._where(action)
        try:
            return self.store.mailbox(user, create=False).read(folder, uid, crlf=False)
        except (NoSuchMessage, NoSuchFolder):
            return None

    def _learn(self, batch: list[LearnAction]) -> None:
        from mailsift.classifier.persist import ModelError
        from mailsift.classifier.record import message_digest

        # The user's latest judgement about each message wins; a said one wins over an implicit one.
        latest: dict[str, tuple[LearnAction, bytes]] = {}
        done_pending = [a.pending_id for a in batch if a.pending_id is not None]
        gone_deferred: list[int] = []
        for action in batch:
            raw = self._read(action)
            if raw is None:
                self.missing += 1
                log.info("feedback: %s/%s uid %d is gone; not learned", action.user, action.folder, action.uid)
                if action.deferred_id is not None:
                    gone_deferred.append(action.deferred_id)
                continue
            digest = message_digest(raw)
            prev = latest.get(digest)
            if action.implicit and prev is not None and not prev[0].implicit:
                if action.deferred_id is not None:
                    gone_deferred.append(action.deferred_id)
                continue
            if prev is not None and prev[0].deferred_id is not None:
                gone_deferred.append(prev[0].deferred_id)  # superseded by a newer judgement
            latest.pop(digest, None)
            latest[digest] = (action, raw)
        if self.state is not None:
            self.state.delete_deferred(gone_deferred)
        if not latest:
            self._done(done_pending)
            return
        now = self.clock()
        try:
            judgements = self._learn_locked(latest, now)
        except (ModelError, OSError, sqlite3.Error) as exc:  # sqlite3: the learn record or state.sqlite
            self.failed += len(latest)
            log.error("feedback: cannot learn into %s: %s; %d judgement(s) kept for `mailsift retrain`",
                      self.dbpath, exc, len(latest))
            self._spool_unlocked([(Judgement(now, a.user, d, a.label, a.reason, "not-learned"), raw)
                                  for d, (a, raw) in latest.items()])
            for _d, (a, _raw) in latest.items():
                metrics.learn_event(a.reason, a.label, "not-learned")
            try:
                if self.state is not None:  # deferred ones wait for a model that works
                    self.state.mark_emitted("deferred", [a.deferred_id for a, _r in latest.values()
                                                         if a.deferred_id is not None], emitted=False)
                self._done(done_pending)
            except sqlite3.Error as exc2:
                log.error("feedback: cannot update %s/feedback/state.sqlite: %s", self.dbpath, exc2)
            return
        self._done(done_pending)
        for j in judgements:
            metrics.learn_event(j.reason, j.label, j.outcome)
            log.info("feedback: %s %s (%s): %s", j.user, j.label, j.reason, j.outcome)

    def _done(self, pending_ids: list[int]) -> None:
        if self.state is not None:
            self.state.delete_pending(pending_ids)

    def _learn_locked(self, latest: dict[str, tuple[LearnAction, bytes]], now: float) -> list[Judgement]:
        outbox = None
        if self.share:
            from mailsift.share.outbox import Outbox

            outbox = Outbox(self.dbpath)
        try:
            return self._learn_with(latest, now, outbox)
        finally:
            if outbox is not None:
                outbox.close()

    def _learn_with(self, latest: dict[str, tuple[LearnAction, bytes]], now: float, outbox: Any) -> list[Judgement]:
        from mailsift.classifier.learn import Learner

        state, cap, day = self.state, self.max_per_user_day, day_of(now)
        # flock + fresh load of the model and record
        with Learner(self.dbpath, source="feedback", keep_versions=self.keep_versions, outbox=outbox) as learner:
            judgements: list[Judgement] = []
            spooled: list[tuple[Judgement, bytes]] = []
            items = []
            for digest, (action, raw) in latest.items():
                known = learner.record.get(digest)
                if known and known[0] == action.label:
                    outcome = "skipped"
                elif known and action.implicit:
                    outcome = "overruled"  # implicit: never over what the record holds
                else:
                    outcome = "moved" if known else "learned"
                    if cap and state is not None:
                        if state.count(action.user, day) >= cap:
                            outcome = "deferred"
                        else:  # counted at once, so the sweeper never sees room that is taken
                            state.add_count(action.user, day, "learned")
                j = Judgement(now, action.user, digest, action.label, action.reason, outcome)
                if outcome == "deferred":
                    if self._defer(action, digest, raw, now, day):
                        judgements.append(j)
                        spooled.append((j, raw))
                    continue
                judgements.append(j)
                spooled.append((j, raw))
                if state is not None:
                    state.supersede_deferred(digest, explicit=not action.implicit, keep=action.deferred_id)
                    if action.deferred_id is not None:
                        state.delete_deferred([action.deferred_id])
                if outcome in ("learned", "moved"):
                    items.append((f"{action.user}/{action.folder}/{action.uid}", raw, action.label))
            if items and self.self_train:
                try:
                    self._self_train(learner, set(latest))
                except Exception:  # noqa: BLE001 - never at the cost of the users' judgements
                    log.exception("feedback: self-training on delivered mail failed")
            stats = learner.learn_labelled(items)
            if learner.dirty:
                learner.save()
                self.saves += 1
            self.spool.record(spooled)
        self.learned += stats.learned
        self.moved += stats.moved
        self.skipped += sum(j.outcome in ("skipped", "overruled") for j in judgements)
        return judgements

    def _self_train(self, learner: Any, skip: set[str]) -> None:
        """Self-training (ModelSettings.self_train, measured in docs/classifier.md): before a batch
        of real judgements, the messages delivered since the last one (the newest SELF_TRAIN_KEPT)
        are scored by the model and learned with its pseudo-label where it is sure, within its
        bounds; never one with a real label (in this batch or the learn record). Here and not in
        the milter: its CPU per message stays as it is, and the model is saved only when users
        teach it something anyway."""
        from mailsift.classifier.record import message_digest
        from mailsift.store.api import NoSuchFolder, NoSuchMessage

        with self._loc_lock:
            delivered = list(self._delivered)
            self._delivered.clear()
        model, n = learner.model, 0
        if not model.self_trains():
            return
        for user, folder, uid in delivered:
            try:
                raw = self.store.mailbox(user, create=False).read(folder, uid, crlf=False)
            except (NoSuchMessage, NoSuchFolder):
                continue  # moved or deleted since: its move is judged as such
            digest = message_digest(raw)
            if digest in skip or learner.record.get(digest) is not None:
                continue
            skip.add(digest)  # one message delivered to several users counts once
            if model.self_learn(raw, model.spamminess(raw)) is not None:
                n += 1
        if n:
            learner.dirty = True
            self.self_trained += n
            log.info("feedback: %d delivered message(s) learned with the model's own pseudo-labels", n)

    def _defer(self, action: LearnAction, digest: str, raw: bytes, now: float, day: int) -> bool:
        """Keep a judgement over the user's cap for a later day. True when it is new (journal it)."""
        state = self.state
        assert state is not None
        self.deferred += 1
        if action.deferred_id is not None:  # released too early: back in the queue as it was
            state.mark_emitted("deferred", [action.deferred_id], emitted=False)
            return False
        state.supersede_deferred(digest, explicit=not action.implicit)
        state.add_count(action.user, day, "deferred")
        if state.deferred_count(action.user) >= DEFERRED_DAYS * self.max_per_user_day:
            state.add_count(action.user, day, "dropped")
            log.warning("feedback: %s is over the daily cap (%d) with %d days of judgements deferred: "
                        "%s (%s) only journalled, not queued", action.user, self.max_per_user_day,
                        DEFERRED_DAYS, action.label, action.reason)
            return True
        state.add_deferred(action.user, digest, action.label, action.reason, action.folder, action.uid,
                           action.implicit, now, raw if len(raw) <= MAX_MESSAGE_BYTES else None)
        log.warning("feedback: %s is over the daily cap (%d): %s (%s) deferred to a later day",
                    action.user, self.max_per_user_day, action.label, action.reason)
        return True

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


def start_learner(store: Any, settings: FeedbackSettings, classifier_dbpath: str = "models",
                  users: str | Path | None = None, keep_versions: int = 5, share: bool = False) -> Handle:
    """Start learning from `store`'s events into the model dir (settings.dbpath, else
    classifier_dbpath). `users`: the user database, for who opted out of implicit feedback.
    Returns a handle whose stop() learns what is pending and ends the worker."""
    if not settings.enabled:
        log.info("learning from users' Junk moves is off ([feedback] enabled = false)")
        return _Off()
    opted_out: Callable[[str], bool] = lambda user: False
    if users is not None:
        from mailsift.store.users import Users

        db = Users(users)
        opted_out = lambda user: not db.implicit_feedback(user)  # noqa: E731
    if settings.implicit:
        clock = clock_from_env()
        sweep_interval = SWEEP_INTERVAL if clock is time.time else TEST_SWEEP_INTERVAL
    else:
        clock, sweep_interval = time.time, SWEEP_INTERVAL
    return FeedbackLearner(store, settings.model_dir(classifier_dbpath), settings.save_interval,
                           settings.spool_max_messages, max_per_user_day=settings.max_learn_per_user_day,
                           confirm_after=settings.confirm_after_seconds() if settings.implicit else None,
                           opted_out=opted_out, clock=clock, sweep_interval=sweep_interval,
                           keep_versions=keep_versions, share=share,
                           self_train=settings.self_train and not share).start()
