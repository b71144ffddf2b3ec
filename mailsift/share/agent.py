"""The share agent: one thread in `mailsift serve` (a trainer candidate) and `mailsift milter`.

Every `interval` seconds it
  1. sends the outbox (learn events this host's learners made) to the Redis stream;
  2. (trainer candidates) looks whether it holds the trainer's lease (a second thread takes or
     renews it every third of its TTL, so a long step never lets it lapse);
  3. installs a published version newer than the one installed here (snapshot.install: the
     milter's model watcher reloads it; the model history records it with source `share`);
  4. (the lease holder) learns or forgets, in order, the stream's events after what the
     published model has learned, with sa-learn semantics (an event already learned is a
     no-op), and publishes the model as the next version when it changed here: by those
     events, or by a `mailsift learn`, a feedback save or a rollback on this host.
With Redis away the agent keeps the model it has, the learners keep queueing into the outbox,
and it retries every `interval` (logging once). A trainer that cannot renew stops training; the
lease expires after `lease_seconds` and another candidate takes it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

from mailsift.share.outbox import Outbox
from mailsift.share.snapshot import (FileId, LocalState, install, install_in_child, model_file_id, read_state,
                                    snapshot, write_state)

log = logging.getLogger("mailsift.share")

INTERVAL = 0.5
# What the agent imports once it runs: a daemon imports these before it drops root, in case the
# installation is not readable by its user (daemon.drop_privileges).
PRELOAD = ("mailsift.share.channel", "mailsift.share.outbox", "mailsift.share.snapshot", "mailsift.resp",
           "asyncio", "ssl", "subprocess", "hashlib", "uuid")
SEND_BATCH = 200
APPLY_BATCH = 500
# At most one published version per this many seconds: each one is fetched by every host (about
# 0.75 MB for a 250 + 250 message model), so a busy day of Junk moves is not a stream of them.
PUBLISH_EVERY = 2.0


class ShareAgent:
    def __init__(self, url: str, dbpath: str | Path, *, trainer: bool, keep_versions: int = 5,
                 lease_seconds: float = 15.0, interval: float = INTERVAL, install_in_child: bool = False,
                 install_cpus: frozenset[int] | None = None) -> None:
        self.url = url
        self.dbpath = Path(dbpath)
        self.trainer = trainer
        self.keep_versions = keep_versions
        self.lease_seconds = lease_seconds
        self.interval = interval
        self.install_in_child = install_in_child  # the milter: keep its process to reloading
        self.install_cpus = install_cpus  # ... and the child off the CPUs it keeps for itself
        self.outbox = Outbox(self.dbpath)
        self.me = ""
        self.holding = False
        self.cursor: str | None = None  # the last stream id learned here (while holding the lease)
        self._channel: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._keeper: threading.Thread | None = None
        self._lease_held = False  # what the keeper last heard from Redis
        self._down_since: float | None = None
        self._published_at = 0.0
        # Counters, for tests and logs.
        self.sent = 0
        self.installed = 0
        self.published = 0
        self.applied = 0

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> "ShareAgent":
        from mailsift.share.channel import trainer_id

        self.me = trainer_id()
        self._thread = threading.Thread(target=self._run, name="share-agent", daemon=True)
        self._thread.start()
        if self.trainer:
            self._keeper = threading.Thread(target=self._keep_lease, name="share-lease", daemon=True)
            self._keeper.start()
        log.info("sharing the model in %s through %s%s", self.dbpath, _safe_url(self.url),
                 " (a trainer candidate)" if self.trainer else "")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        for t in (self._thread, self._keeper):
            if t is not None:
                t.join(timeout)
        self._thread = self._keeper = None
        if self._lease_held and self._channel is not None:
            try:
                self._channel.release_lease(self.me)
            except Exception:  # noqa: BLE001 - it expires anyway
                pass
        if self._channel is not None:
            self._channel.close()
        self.outbox.close()

    def _run(self) -> None:
        from mailsift.resp import RespError

        while not self._stop.is_set():
            busy = False
            try:
                if self._channel is None:
                    from mailsift.share.channel import Channel

                    self._channel = Channel(self.url)
                busy = self.step()
                if self._down_since is not None:
                    log.info("redis %s is back after %.0f s", _safe_url(self.url), time.time() - self._down_since)
                    self._down_since = None
            except (RespError, OSError) as exc:
                if self._channel is not None:  # a fresh connection next time
                    self._channel.close()
                    self._channel = None
                if self.holding:
                    log.warning("share: lost the trainer's lease with redis (%s)", exc)
                self.holding = False
                self.cursor = None
                if self._down_since is None:
                    self._down_since = time.time()
                    log.warning("share: redis %s unavailable (%s): keeping the model we have, learn events "
                                "wait in %s", _safe_url(self.url), exc, self.outbox.path)
            except Exception:  # noqa: BLE001 - the agent must never die
                log.exception("share: a step failed")
            if not busy:
                self._stop.wait(self.interval)

    def _keep_lease(self) -> None:
        """Take or renew the lease every third of its TTL, on its own connection, so a long step
        (a large batch, a slow disk) never lets it lapse while this process is alive."""
        from mailsift.resp import RespError
        from mailsift.share.channel import Channel

        channel: Any = None
        while not self._stop.is_set():
            try:
                if channel is None:
                    channel = Channel(self.url)
                self._lease_held = channel.hold_lease(self.me, self.lease_seconds)
            except (RespError, OSError):
                self._lease_held = False
                if channel is not None:
                    channel.close()
                    channel = None
            except Exception:  # noqa: BLE001 - the keeper must never die
                log.exception("share: renewing the lease failed")
                self._lease_held = False
            self._stop.wait(min(self.interval, self.lease_seconds / 3))
        if channel is not None:
            channel.close()

    # -- one step -----------------------------------------------------------------------------
    def step(self) -> bool:
        """Send, lease, follow, train once; True when there may be more to do at once."""
        busy = self.send()
        if self.trainer:
            holding = self._lease_held
            if holding != self.holding:
                log.info("share: %s the trainer's lease (%s)", "took" if holding else "lost", self.me)
                self.cursor = None
            self.holding = holding
        self.follow()
        if self.holding:
            busy = self.train() or busy
        return busy

    def send(self) -> bool:
        events = self.outbox.pending(SEND_BATCH)
        for ev in events:
            self._channel.append(ev)  # False: Redis took it before (a retry): not added twice
        self.outbox.remove([ev.id for ev in events])
        self.sent += len(events)
        return len(events) == SEND_BATCH

    def follow(self) -> None:
        from mailsift.share.channel import ChecksumError

        state = read_state(self.dbpath)
        if self._channel.published_version() <= state.version:
            return
        try:
            pub = self._channel.published()
        except ChecksumError as exc:
            log.error("share: %s; keeping the model we have", exc)
            return
        if pub is None or pub.version <= state.version:
            return
        try:
            fid = self._install(pub.data)
        except Exception as exc:  # noqa: BLE001 - ModelError or InstallError: never this version again
            log.error("share: cannot use published model version %d: %s; keeping the model we have",
                      pub.version, exc)
            write_state(self.dbpath, LocalState(pub.version, state.model_id))
            return
        write_state(self.dbpath, LocalState(pub.version, fid))
        self.cursor = pub.applied if self.holding else None
        self.installed += 1
        log.info("share: installed model version %d (%s ham, %s spam) from %s", pub.version,
                 pub.meta.get("n_ham", "?"), pub.meta.get("n_spam", "?"), pub.meta.get("trainer", "?"))

    def _install(self, data: bytes) -> FileId | None:
        if self.install_in_child:  # the classifier is not imported into this process
            return install_in_child(self.dbpath, data, self.keep_versions, cpus=self.install_cpus)
        return install(self.dbpath, data, self.keep_versions)

    def train(self) -> bool:
        from mailsift.classifier.learn import FORGET, Learner

        ch = self._channel
        if self.cursor is None:
            self.cursor = ch.applied()
        events = ch.events_after(self.cursor, APPLY_BATCH)
        usable = [e for e in events if e.label in ("spam", "ham", FORGET) and e.raw]
        if usable:
            learned = skipped = forgotten = 0
            with Learner(self.dbpath, source="share", keep_versions=self.keep_versions) as learner:
                # in stream order: a message learned, then forgotten, then learned again ends learned
                for forget, run in itertools.groupby(usable, key=lambda e: e.label == FORGET):
                    named = [(f"share:{e.host}:{e.id}", e) for e in run]
                    if forget:
                        forgotten += learner.forget_many((name, e.raw) for name, e in named).forgotten
                    else:
                        stats = learner.learn_labelled([(name, e.raw, e.label) for name, e in named])
                        learned, skipped = learned + stats.learned, skipped + stats.skipped
                learner.save()
            self.applied += learned + forgotten
            log.info("share: learned %d and forgot %d of %d event(s) (%d already known)", learned, forgotten,
                     len(usable), skipped)
        if events:
            self.cursor = events[-1].stream_id
        state = read_state(self.dbpath)
        fid = model_file_id(self.dbpath)
        if (fid is not None and (fid != state.model_id or ch.published_version() < state.version)
                and time.monotonic() - self._published_at >= PUBLISH_EVERY):
            self._publish(state)
        return len(events) == APPLY_BATCH

    def _publish(self, state: LocalState) -> None:
        from mailsift.classifier.persist import ModelError

        ch = self._channel
        try:
            data, meta, fid = snapshot(self.dbpath)
        except ModelError as exc:
            log.error("share: cannot publish the model in %s: %s", self.dbpath, exc)
            return
        version = max(ch.published_version(), state.version) + 1
        assert self.cursor is not None
        meta.update(trainer=self.me, published_at=time.time())
        self._published_at = time.monotonic()
        if ch.publish(self.me, version, data, meta, self.cursor, base=state.version):
            write_state(self.dbpath, LocalState(version, fid))
            self.published += 1
            log.info("share: published model version %d (%d bytes, %s ham, %s spam)", version, len(data),
                     meta.get("n_ham"), meta.get("n_spam"))
        elif ch.published_version() > state.version:
            # The lease went to another trainer and came back while this one was busy (waiting
            # for the learn lock): it published a version this model lacks. Install it and learn
            # the stream's events after it, rather than publish over it.
            log.warning("share: not published: version %d was published meanwhile; installing it first",
                        ch.published_version())
            self.cursor = None
        else:
            log.warning("share: not published: the lease moved on")
            self.holding = False
            self.cursor = None


def _safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***", 1)
    return url


def start_agent(settings: Any, dbpath: str | Path, *, trainer: bool,
                install_cpus: frozenset[int] | None = None) -> ShareAgent | None:
    """The agent for [classifier] `settings` (None when share is off). A follower (the milter)
    installs each version in a child process, on `install_cpus` when given."""
    if not settings.share:
        return None
    return ShareAgent(settings.share, dbpath, trainer=trainer, keep_versions=settings.keep_versions,
                      lease_seconds=settings.share_lease_seconds, install_in_child=not trainer,
                      install_cpus=install_cpus).start()


def send_outbox(url: str, dbpath: str | Path, timeout: float = 3.0) -> tuple[int, int]:
    """Send DBPATH's outbox to Redis now (`mailsift learn`); returns (sent, left). What cannot be
    sent stays for the agent of the `mailsift serve` or `mailsift milter` using this directory."""
    from mailsift.resp import RespError
    from mailsift.share.channel import Channel

    outbox = Outbox(dbpath)
    sent = 0
    try:
        ch = Channel(url, timeout=timeout)
        try:
            while True:
                events = outbox.pending(SEND_BATCH)
                if not events:
                    break
                for ev in events:
                    ch.append(ev)
                outbox.remove([ev.id for ev in events])
                sent += len(events)
        finally:
            ch.close()
    except (RespError, OSError) as exc:
        log.warning("share: redis %s unavailable (%s)", _safe_url(url), exc)
    left = outbox.count()
    outbox.close()
    return sent, left
