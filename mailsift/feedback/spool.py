"""The feedback spool: every judgement users made, with the message, for `mailsift retrain`.

    DBPATH/feedback/journal.jsonl      one JSON object a line: t, user, digest, label, reason, outcome
    DBPATH/feedback/spool/DIGEST.eml   the message bytes as stored (one file per message digest)

Messages over 1 MB are journalled without their bytes. The latest line for a digest is the user's current judgement (a message moved into Junk and
rescued later ends as ham). The spool keeps at most `max_messages` messages: when it grows past
that, the messages judged longest ago are removed and the journal is rewritten without them.
Files are private to the server's user (0600 in a 0700 directory): they are people's mail.

Writers hold the model directory's learn lock (classifier.learn.LOCK_FILE) while they change the
spool, as `mailsift retrain` does while it reads it; this module itself does no locking.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from mailsift.store.maildir import fsync_dir

log = logging.getLogger("mailsift.feedback")

FEEDBACK_DIR = "feedback"
JOURNAL_FILE = "journal.jsonl"
SPOOL_DIR = "spool"
# Larger messages are journalled but not kept: the tokenizer reads only the first 256 KB of a
# message anyway, and 20,000 messages with big attachments would fill a disk.
MAX_MESSAGE_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Judgement:
    """One user judgement as the journal keeps it."""

    t: float
    user: str
    digest: str
    label: str
    reason: str
    # learned | moved | skipped (already learned so) | not-learned (model unavailable) |
    # deferred (over the user's daily cap; learned on a later day, journalled again then) |
    # overruled (an implicit judgement against what the learn record holds: not learned)
    outcome: str


# Not a current judgement: `mailsift retrain` must not learn what the learner did not.
NOT_CURRENT = frozenset({"deferred", "overruled"})


class Spool:
    def __init__(self, dbpath: str | Path, max_messages: int = 20000,
                 max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self.dir = Path(dbpath) / FEEDBACK_DIR
        self.journal = self.dir / JOURNAL_FILE
        self.spool = self.dir / SPOOL_DIR
        self.max_messages = max_messages
        self.max_message_bytes = max_message_bytes

    def _ensure(self) -> None:
        for d in (self.dir, self.spool):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)

    def path_of(self, digest: str) -> Path:
        return self.spool / f"{digest}.eml"

    # -- writing ------------------------------------------------------------------------------
    def record(self, items: Iterable[tuple[Judgement, bytes | None]]) -> int:
        """Keep these judgements (and their messages, when given); returns how many were written.
        Durable when it returns: message files first, then the journal lines, each fsynced."""
        items = list(items)
        if not items or self.max_messages == 0:
            return 0
        self._ensure()
        for j, raw in items:
            target = self.path_of(j.digest)
            if raw is None or len(raw) > self.max_message_bytes or target.exists():
                continue
            tmp = self.spool / f".{j.digest}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(raw)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        fsync_dir(self.spool)
        lines = "".join(json.dumps(j.__dict__, sort_keys=True) + "\n" for j, _ in items).encode()
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, lines)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._bound()
        return len(items)

    def _bound(self) -> None:
        """Remove the messages judged longest ago beyond max_messages; compact the journal."""
        try:
            n_files = sum(1 for name in os.listdir(self.spool) if name.endswith(".eml"))
        except FileNotFoundError:
            return
        lines = self._read_lines()
        if n_files <= self.max_messages and len(lines) <= 2 * max(self.max_messages, 1000):
            return
        latest = self._latest(lines)
        keep = sorted(latest.values(), key=lambda j: j.t)[-self.max_messages:]
        keep_digests = {j.digest for j in keep}
        for name in os.listdir(self.spool):
            if name.endswith(".eml") and name[:-4] not in keep_digests:
                try:
                    os.unlink(self.spool / name)
                except FileNotFoundError:
                    pass
        tmp = self.journal.with_name(f".{JOURNAL_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write("".join(json.dumps(j.__dict__, sort_keys=True) + "\n" for j in keep).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.journal)
        fsync_dir(self.dir)
        log.info("feedback spool trimmed to %d messages", len(keep))

    # -- reading ------------------------------------------------------------------------------
    def _read_lines(self) -> list[Judgement]:
        try:
            data = self.journal.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in data.splitlines():
            try:
                obj = json.loads(line)
                out.append(Judgement(float(obj["t"]), str(obj["user"]), str(obj["digest"]), str(obj["label"]),
                                     str(obj.get("reason", "")), str(obj.get("outcome", ""))))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash: the rest still counts
        return out

    @staticmethod
    def _latest(lines: list[Judgement]) -> dict[str, Judgement]:
        latest: dict[str, Judgement] = {}
        for j in lines:
            if j.label in ("spam", "ham"):
                latest.pop(j.digest, None)  # re-insert: dict order = order of the latest judgement
                latest[j.digest] = j
        return latest

    def judgements(self) -> list[Judgement]:
        """Every journal line, oldest first."""
        return self._read_lines()

    def current(self) -> list[Judgement]:
        """The latest judgement per message whose bytes are in the spool, oldest first (deferred
        and overruled ones are not judgements yet: retrain must not bypass the daily cap)."""
        latest = self._latest([j for j in self._read_lines() if j.outcome not in NOT_CURRENT])
        return [j for j in sorted(latest.values(), key=lambda j: j.t) if self.path_of(j.digest).exists()]

    def read(self, digest: str) -> bytes | None:
        try:
            return self.path_of(digest).read_bytes()
        except OSError:
            return None

