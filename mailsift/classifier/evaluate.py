"""The TREC spam track's evaluation protocols, over any model with the SpamModel interface.

Online, immediate feedback (`run_online`): starting from an empty model, each message in
order is classified without its label, its result written out, then learned with its label.

User-like feedback (`run_feedback`): the same score-then-learn loop, but learning only what a
user's actions would teach. `full`: every message at once (the TREC protocol, as run_online).
`errors`: only a message whose verdict was wrong (spam not filed as spam, which includes
unsure spam left in the inbox; ham filed as spam), at once: people move misfiled mail and
nothing else. `implicit:N`: errors at once, and every other message with its label N
messages later (the store confirming what people kept, issue 12). `none`: nothing learned.
The model may start from a copy of an existing one (the default model) instead of empty.

Cross-validation (`run_cv`): the messages are shuffled (seeded) and dealt into K folds, spam
and ham separately so each fold has the same mix; each fold is scored by a fresh model
trained on the other K-1. Every message is scored exactly once, and the figures are computed
on all of them together.

Results files have one line per message, `ID TRUTH SCORE JUDGE`:
    ID     the message's file name (blanks replaced by `_`)
    TRUTH  spam | ham
    SCORE  spamminess, higher is spammier, written with full float precision
    JUDGE  spam | ham | unsure | unknown: the model's own decision (see metrics.py for how
           unsure counts)
Each line is flushed as it is written: an interrupted run keeps what it did.
"""

from __future__ import annotations

import logging
import math
import random
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Protocol, Sequence, TextIO

from mailsift.classifier.corpus import Entry, IndexFileError
from mailsift.classifier.metrics import LABELS, Record

log = logging.getLogger("mailsift.evaluate")

JUDGES = ("spam", "ham", "unsure", "unknown")
Progress = Callable[[int, int], None]


class EvaluateError(Exception):
    """The evaluation could not go on; the message names the file and the cause."""


class Scorer(Protocol):
    """What evaluation needs of a model (mailsift.classifier.api.SpamModel provides it)."""

    def learn(self, raw: bytes, label: str) -> object: ...
    def spamminess(self, raw: bytes) -> float: ...
    def verdict(self, raw: bytes, required: float = 5.0) -> object: ...


def result_id(entry: Entry) -> str:
    return re.sub(r"\s", "_", entry.id) or "_"


def format_record(r: Record) -> str:
    return f"{r.id} {r.truth} {r.score!r} {r.judge}\n"


def parse_results(text: str, source: str = "<results>") -> list[Record]:
    """Parse a results file; a bad line is an error naming it."""
    out: list[Record] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 4:
            raise EvaluateError(f"{source}:{lineno}: expected 'ID TRUTH SCORE JUDGE', got {line!r}")
        rid, truth, score_text, judge = parts
        if truth not in LABELS:
            raise EvaluateError(f"{source}:{lineno}: truth must be spam or ham, got {truth!r}")
        if judge not in JUDGES:
            raise EvaluateError(f"{source}:{lineno}: judge must be one of {', '.join(JUDGES)}, got {judge!r}")
        try:
            score = float(score_text)
        except ValueError:
            raise EvaluateError(f"{source}:{lineno}: score is not a number: {score_text!r}") from None
        if math.isnan(score):
            raise EvaluateError(f"{source}:{lineno}: score is NaN")
        out.append(Record(rid, truth, score, judge))
    return out


def read_results(path: str | Path) -> list[Record]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise EvaluateError(f"cannot read results {path}: {exc.strerror}") from None
    return parse_results(text, str(path))


def _read(entry: Entry) -> bytes:
    try:
        return entry.path.read_bytes()
    except OSError as exc:
        raise IndexFileError(f"cannot read {entry.path}: {exc.strerror}") from None


def classify_one(model: Scorer, entry: Entry, raw: bytes, required: float) -> Record:
    """Score and judge one message without its label."""
    try:
        score = float(model.spamminess(raw))
        judge = str(getattr(model.verdict(raw, required=required), "label"))
    except Exception as exc:  # our fault, but name the message so it can be reproduced
        raise EvaluateError(f"classifying {entry.path} failed: {type(exc).__name__}: {exc}") from exc
    if math.isnan(score):
        raise EvaluateError(f"classifying {entry.path} gave a NaN score")
    if judge not in JUDGES:
        judge = "unknown"
    return Record(result_id(entry), entry.label, score, judge)


def _learn(model: Scorer, entry: Entry, raw: bytes) -> None:
    try:
        model.learn(raw, entry.label)
    except Exception as exc:
        raise EvaluateError(f"learning {entry.path} as {entry.label} failed: {type(exc).__name__}: {exc}") from exc


def run_online(entries: Sequence[Entry], model: Scorer, out: TextIO | None = None,
               required: float = 5.0, progress: Progress | None = None) -> list[Record]:
    """Immediate-feedback online protocol: classify each message, write it out, then train it."""
    return run_feedback(entries, model, Feedback("full"), out, required, progress)


@dataclass(frozen=True)
class Feedback:
    """How the evaluated model learns: mode full | errors | implicit | none, delay for implicit."""

    mode: str
    delay: int = 0

    @classmethod
    def parse(cls, text: str) -> "Feedback":
        mode, _, arg = text.strip().partition(":")
        if mode in ("full", "errors", "none") and not arg:
            return cls(mode)
        if mode == "implicit":
            try:
                delay = int(arg)
            except ValueError:
                delay = -1
            if delay < 0:
                raise ValueError(f"implicit feedback needs a delay in messages, e.g. implicit:1000, not {text!r}")
            return cls(mode, delay)
        raise ValueError(f"feedback must be full, errors, implicit:N or none, not {text!r}")

    def __str__(self) -> str:
        return f"implicit:{self.delay}" if self.mode == "implicit" else self.mode


def misfiled(rec: Record) -> bool:
    """What a user would correct: spam not filed to Junk (ham or unsure), ham filed to Junk."""
    return rec.judge == "spam" if rec.truth == "ham" else rec.judge != "spam"


# Self-training (mailsift.feedback.learner): what LMTP delivered since the feedback learner's
# last batch (at most this many, the newest) is learned with the model's pseudo-labels in its
# next batch of real judgements, before them.
SELF_TRAIN_KEPT = 1000


def run_feedback(entries: Sequence[Entry], model: Scorer, feedback: Feedback, out: TextIO | None = None,
                 required: float = 5.0, progress: Progress | None = None,
                 label_noise: float = 0.0, seed: int = 0, self_train_every: int = 0) -> list[Record]:
    """Score each message, write it out, then learn what `feedback` says a user would teach.

    label_noise: the fraction of learned labels flipped (seeded), as when one recipient calls
    a newsletter spam that another keeps; records keep the true label. A model that
    self-trains (SpamModel.self_trains) learns the messages scored since the last one taught
    with its pseudo-labels before each taught one, as the store's feedback learner does, and
    with self_train_every N also every N messages without waiting for one (a learner that
    saved the model for deliveries alone; measured, not built)."""
    rng = random.Random(seed)
    pending: deque[tuple[int, Entry]] = deque()
    records: list[Record] = []
    n = len(entries)

    self_trains = bool(getattr(model, "self_trains", lambda: False)())
    delivered: deque[Entry] = deque(maxlen=SELF_TRAIN_KEPT)

    def self_train(skip: Entry | None = None) -> None:
        while delivered:  # the feedback learner's batch: the deliveries since, pseudo-labelled first
            e = delivered.popleft()
            if e is not skip:  # a message with a real label is never pseudo-labelled
                other = _read(e)
                model.self_learn(other, float(model.spamminess(other)))  # type: ignore[attr-defined]

    def teach(entry: Entry, raw: bytes | None = None) -> None:
        self_train(entry)
        label = entry.label
        if label_noise and rng.random() < label_noise:
            label = "ham" if label == "spam" else "spam"
        _learn(model, Entry(label, entry.path) if label != entry.label else entry,
               raw if raw is not None else _read(entry))

    for i, entry in enumerate(entries, 1):
        while pending and pending[0][0] <= i:
            teach(pending.popleft()[1])
        raw = _read(entry)
        rec = classify_one(model, entry, raw, required)
        records.append(rec)
        if self_trains:
            delivered.append(entry)
            if self_train_every and i % self_train_every == 0:
                self_train()
        if out is not None:
            out.write(format_record(rec))
            out.flush()
        if feedback.mode == "full" or (feedback.mode != "none" and misfiled(rec)):
            teach(entry, raw)
        elif feedback.mode == "implicit":
            pending.append((i + feedback.delay, entry))
        if progress is not None:
            progress(i, n)
    return records


def folds(entries: Sequence[Entry], k: int, seed: int = 0) -> list[list[Entry]]:
    """Deal the messages into k folds: shuffled with `seed`, spam and ham dealt separately."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    rng = random.Random(seed)
    out: list[list[Entry]] = [[] for _ in range(k)]
    for label in LABELS:
        group = [e for e in entries if e.label == label]
        rng.shuffle(group)
        offset = rng.randrange(k)  # so small classes do not always fill fold 0 first
        for i, e in enumerate(group):
            out[(i + offset) % k].append(e)
    if any(not f for f in out):
        raise ValueError(f"{len(entries)} messages are too few for {k} folds")
    for f in out:
        rng.shuffle(f)
    return out


def run_cv(entries: Sequence[Entry], k: int, new_model: Callable[[], Scorer],
           out: TextIO | None = None, required: float = 5.0, seed: int = 0,
           progress: Progress | None = None) -> list[Record]:
    """K-fold cross-validation; each message is scored once, by a model that never saw it."""
    parts = folds(entries, k, seed)
    cache: dict[Path, bytes] = {}
    total = sum(len(p) for p in parts) * k  # k-1 learns + 1 classify per message
    done = 0
    records: list[Record] = []

    def raw_of(e: Entry) -> bytes:
        raw = cache.get(e.path)
        if raw is None:
            raw = cache[e.path] = _read(e)
        return raw

    for i, test in enumerate(parts):
        model = new_model()
        train = [e for j, p in enumerate(parts) if j != i for e in p]
        random.Random(seed + 1 + i).shuffle(train)
        for e in train:
            _learn(model, e, raw_of(e))
            done += 1
            if progress is not None:
                progress(done, total)
        for e in test:
            rec = classify_one(model, e, raw_of(e), required)
            records.append(rec)
            if out is not None:
                out.write(format_record(rec))
                out.flush()
            done += 1
            if progress is not None:
                progress(done, total)
        log.info("fold %d/%d: trained on %d, scored %d", i + 1, k, len(train), len(test))
    return records


def worst(records: Iterable[Record], n: int = 10) -> tuple[list[Record], list[Record]]:
    """The n spammiest ham and the n hammiest spam: where to look when figures are poor."""
    recs = list(records)
    ham = sorted((r for r in recs if r.truth == "ham"), key=lambda r: -r.score)[:n]
    spam = sorted((r for r in recs if r.truth == "spam"), key=lambda r: r.score)[:n]
    return ham, spam
