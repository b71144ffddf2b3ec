"""The trainer's lease for a one-off trainer: `mailsift retrain` with `[classifier] share` on.

    with OneOffTrainer(url, dbpath, lease_seconds, keep_versions) as trainer:   # LeaseUnavailable
        trainer.follow()      # the newest published version becomes the live model here
        ...                   # retrain under the model directory's learn lock
        trainer.publish()     # the retrained model, as the next version

It asks the holder (a `mailsift serve`) to let the lease go (mailsift:share:lease-wanted): the
holder's agent releases it at its next renewal and no candidate takes it while this one wants
it; a dead holder's lease runs out after `lease_seconds`. A thread renews both while the lease
is held; leaving releases them, and the serve's agent takes the lease back, installs what was
published and learns the stream's events after it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("mailsift.share")


class LeaseUnavailable(Exception):
    """The lease could not be had in time (another one-off trainer, or Redis away)."""


class OneOffTrainer:
    def __init__(self, url: str, dbpath: str | Path, lease_seconds: float, keep_versions: int,
                 wait: float | None = None) -> None:
        self.url = url
        self.dbpath = Path(dbpath)
        self.lease_seconds = lease_seconds
        self.keep_versions = keep_versions
        # the holder lets go within a renewal (a third of its TTL); a dead one's lease runs out
        self.wait = wait if wait is not None else 2 * lease_seconds + 5
        self.me = ""
        self.published: int | None = None
        self._channel: Any = None
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._lost = False

    def __enter__(self) -> "OneOffTrainer":
        from mailsift.resp import RespError
        from mailsift.share.channel import Channel, trainer_id

        self.me = trainer_id()
        try:
            self._channel = Channel(self.url)
            deadline = time.monotonic() + self.wait
            while not (self._channel.want_lease(self.me, self.lease_seconds)
                       and self._channel.hold_lease(self.me, self.lease_seconds)):
                if time.monotonic() >= deadline:
                    holder = self._channel.lease_holder()
                    raise LeaseUnavailable(f"the trainer's lease was not free within {self.wait:g} s "
                                           f"(held by {holder or 'nobody'}; another retrain may be running)")
                time.sleep(0.2)
        except (RespError, OSError) as exc:
            self._close()
            raise LeaseUnavailable(f"redis: {exc}") from None
        except BaseException:
            self._close()
            raise
        log.info("share: took the trainer's lease (%s)", self.me)
        self._keeper = threading.Thread(target=self._keep, name="share-lease", daemon=True)
        self._keeper.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(10)
        if self._channel is not None:
            try:
                self._channel.release_lease(self.me)
                self._channel.unwant_lease(self.me)
            except Exception:  # noqa: BLE001 - both expire anyway
                pass
        self._close()

    def _close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _keep(self) -> None:
        """Renew the want and the lease every third of the TTL, on a connection of its own."""
        from mailsift.share.channel import Channel

        channel = None
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                if channel is None:
                    channel = Channel(self.url)
                if not (channel.want_lease(self.me, self.lease_seconds)
                        and channel.hold_lease(self.me, self.lease_seconds)):
                    self._lost = True
            except Exception:  # noqa: BLE001 - publish() refuses without the lease anyway
                if channel is not None:
                    channel.close()
                    channel = None
        if channel is not None:
            channel.close()

    def follow(self) -> int:
        """Install the newest published version here when it is newer than the local one (what
        the retrain compares against is the shared model); returns the installed version."""
        from mailsift.share.snapshot import LocalState, install, read_state, write_state

        state = read_state(self.dbpath)
        if self._channel.published_version() <= state.version:
            return state.version
        pub = self._channel.published()  # ChecksumError: refuse to work on a corrupt version
        if pub is None or pub.version <= state.version:
            return state.version
        fid = install(self.dbpath, pub.data, self.keep_versions)
        write_state(self.dbpath, LocalState(pub.version, fid))
        log.info("share: installed model version %d before retraining", pub.version)
        return pub.version

    def publish(self) -> int:
        """Publish the model of dbpath as the next version; returns it. LeaseUnavailable when the
        lease was lost meanwhile (Redis away longer than the TTL)."""
        from mailsift.share.snapshot import LocalState, read_state, snapshot, write_state

        ch = self._channel
        data, meta, fid = snapshot(self.dbpath)
        base = read_state(self.dbpath).version  # what follow() installed before the retrain
        version = max(ch.published_version(), base) + 1
        meta.update(trainer=self.me, published_at=time.time())
        # the stream's events after what the last version learned stay for the next trainer
        if self._lost or not ch.publish(self.me, version, data, meta, ch.applied(), base=base):
            raise LeaseUnavailable("the trainer's lease was lost before the model could be published")
        write_state(self.dbpath, LocalState(version, fid))
        self.published = version
        log.info("share: published model version %d (%d bytes)", version, len(data))
        return version
