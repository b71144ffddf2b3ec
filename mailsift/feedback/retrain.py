"""Nightly retraining: a fresh model from users' feedback (and training folders), swapped in
only when it is not worse than the live one on the most recent feedback.

    report = retrain(dbpath, ham=[...], spam=[...], holdout=0.2, force=False, dry_run=False)
    print("\n".join(report.lines()))

1. Under the model directory's learn lock (the feedback learner and `mailsift learn` wait):
   the spool's current judgements, oldest first. The most recent `holdout` share of them is
   held out (at least MIN_HOLDOUT messages, or nothing is held out).
2. A fresh model (the live model's settings) learns the training folders, then the older
   feedback in the order users gave it (the user's label wins over a folder's for the same
   message digest), with sa-learn semantics in a scratch directory beside the model.
3. Both models score the held-out messages. The live model has already learned them, so they
   are first unlearned from an in-memory copy of it (the learn record's steps make that exact for
   the counts): neither model has seen what it is judged on. Figures: 1-ROCA% (when both
   classes are held out) and errors (ham judged spam + spam not judged spam; unsure counts as
   ham, as users see it).
4. Not worse = no more errors and no higher 1-ROCA%. Then the new model also learns the
   held-out messages and replaces the live one: the previous model goes to
   DBPATH/feedback/previous-model.npz (`mailsift learn --restore` brings it back), the learn
   record is replaced by exactly what the new model learned, the model is saved atomically
   (the milter reloads it). `force` swaps anyway (also without a holdout); `dry_run` never swaps.
"""

from __future__ import annotations

import fcntl
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from mailsift.classifier.metrics import Record
from mailsift.feedback.spool import FEEDBACK_DIR, Spool

MIN_HOLDOUT = 10
PREVIOUS_BACKUP = "previous-model.npz"


class RetrainError(Exception):
    """Retraining cannot run (nothing to train from, an unusable live model...)."""


@dataclass
class Evaluation:
    n_spam: int = 0
    n_ham: int = 0
    errors: int = 0
    roca_pct: float | None = None  # None when a class is missing

    def text(self) -> str:
        roca = "n/a" if self.roca_pct is None else f"{self.roca_pct:.4f}"
        return f"1-ROCA% {roca}, errors {self.errors} of {self.n_spam + self.n_ham}"


@dataclass
class RetrainReport:
    feedback: int = 0
    held_out: int = 0
    folder_messages: int = 0
    unreadable: list[str] = field(default_factory=list)
    new_ham: int = 0
    new_spam: int = 0
    live: Evaluation | None = None
    new: Evaluation | None = None
    decision: str = ""  # swapped | kept | dry-run
    reason: str = ""
    new_records: list[Record] = field(default_factory=list)  # the held-out messages as each model scored them
    live_records: list[Record] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"feedback messages: {self.feedback} ({self.held_out} most recent held out for evaluation)",
               f"training folder messages: {self.folder_messages}"
               + (f" ({len(self.unreadable)} unreadable)" if self.unreadable else ""),
               f"new model: {self.new_ham} ham, {self.new_spam} spam"]
        if self.new is not None:
            out.append(f"held-out evaluation: new model {self.new.text()}")
            out.append(f"held-out evaluation: live model {self.live.text() if self.live else 'none'}")
        out.append(f"{self.decision}: {self.reason}")
        return out


def _folder_messages(paths: Iterable[str], kind: str | None) -> Iterator[tuple[str, bytes | None]]:
    from mailsift.classifier.learn import iter_paths

    for p in paths:
        is_maildir = kind == "maildir" or (kind is None and (Path(p) / "cur").is_dir())
        yield from iter_paths([p], "maildir" if is_maildir else kind)


def _evaluate(model: object, held: list[tuple[str, str, bytes]], required: float) -> tuple[Evaluation, list[Record]]:
    """Score the held-out (digest, label, raw): the figures, and one Record per message (its
    score the spam probability, 0.5 when the model gave none; its judge what a user sees)."""
    from mailsift.classifier.evaluate import misfiled
    from mailsift.classifier.metrics import roc_area

    records = []
    for digest, label, raw in held:
        verdict = model.verdict(raw, required)  # type: ignore[attr-defined]
        p = verdict.probability if verdict.probability is not None else 0.5
        records.append(Record(digest, label, float(p), verdict.label))
    spam_scores = [r.score for r in records if r.truth == "spam"]
    ham_scores = [r.score for r in records if r.truth == "ham"]
    ev = Evaluation(n_spam=len(spam_scores), n_ham=len(ham_scores),
                    errors=sum(misfiled(r) for r in records))
    if spam_scores and ham_scores:
        ev.roca_pct = 100.0 * (1.0 - roc_area(spam_scores, ham_scores))
    return ev, records


def _not_worse(new: Evaluation, live: Evaluation) -> bool:
    if new.errors > live.errors:
        return False
    if new.roca_pct is not None and live.roca_pct is not None and new.roca_pct > live.roca_pct + 1e-9:
        return False
    return True


def retrain(dbpath: str | Path, ham: Sequence[str] = (), spam: Sequence[str] = (),
            kind: str | None = None, holdout: float = 0.2, force: bool = False, dry_run: bool = False,
            required: float = 5.0, keep_versions: int = 5) -> RetrainReport:
    from mailsift.classifier.learn import LOCK_FILE, Learner, LearnStats, has_model

    from mailsift.classifier.persist import UntrustedModel, check_model_dir

    d = Path(dbpath)
    try:  # before anything is opened there: never as root in the model user's directory
        check_model_dir(d)
    except UntrustedModel as exc:
        raise RetrainError(str(exc)) from None
    d.mkdir(parents=True, exist_ok=True)
    report = RetrainReport()
    with open(d / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        spool = Spool(d)
        feedback = [(j.digest, j.label) for j in spool.current()]  # oldest first; bytes read on use
        report.feedback = len(feedback)
        n_hold = int(round(len(feedback) * holdout)) if holdout > 0 else 0
        if n_hold < MIN_HOLDOUT:
            n_hold = 0
        train_fb = feedback[: len(feedback) - n_hold]
        held = [(dg, label, raw) for dg, label in feedback[len(feedback) - n_hold:]
                if (raw := spool.read(dg)) is not None]
        report.held_out = len(held)
        fb_digests = {dg for dg, _l in feedback}

        live = _load_live(d, force) if has_model(d) else None
        scratch = Path(tempfile.mkdtemp(prefix=".retrain-", dir=d))
        try:
            with Learner(scratch, source=None) as learner:
                if live is not None:
                    from mailsift.classifier.model import SpamModel

                    learner.model = SpamModel(live.settings)
                stats = LearnStats()
                for label, paths in (("ham", ham), ("spam", spam)):
                    learner.learn_labelled(_without(_folder_messages(paths, kind), fb_digests, label), stats)
                report.folder_messages = stats.examined
                report.unreadable = stats.unreadable
                learner.learn_labelled(((f"feedback/{dg}", spool.read(dg), label) for dg, label in train_fb), stats)
                model = learner.model
                if model.n_ham_ + model.n_spam_ == 0 and not held:
                    raise RetrainError("nothing to train from: the feedback spool is empty and no --ham/--spam "
                                       "folders were given")
                if held:
                    report.new, report.new_records = _evaluate(model, held, required)
                    if live is not None:
                        _unlearn_held(live, d, held)
                        report.live, report.live_records = _evaluate(live, held, required)
                    learner.learn_labelled(((f"feedback/{dg}", raw, label) for dg, label, raw in held), stats)
                report.new_ham, report.new_spam = model.n_ham_, model.n_spam_
                rows = learner.record.rows()
                _decide(report, live is not None, force, dry_run)
                if report.decision == "swapped":
                    _swap(d, model, rows, keep_versions)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return report


def _without(messages: Iterable[tuple[str, bytes | None]], skip: set[str],
             label: str) -> Iterator[tuple[str, bytes | None, str]]:
    """Folder messages with their label, except those users judged (their judgement wins)."""
    from mailsift.classifier.record import message_digest

    for name, raw in messages:
        if raw is not None and message_digest(raw) in skip:
            continue
        yield name, raw, label


def _load_live(d: Path, force: bool) -> object:
    from mailsift.classifier.persist import ModelError, load_model

    try:
        return load_model(d)
    except ModelError as exc:
        if force:
            return None
        raise RetrainError(f"the live model cannot be read ({exc}); use --force to replace it") from None


def _unlearn_held(live: object, d: Path, held: list[tuple[str, str, bytes]]) -> None:
    """Remove the held-out messages the live model learned (in memory only)."""
    from mailsift.classifier.record import RECORD_FILE, LearnRecord

    if not (d / RECORD_FILE).exists():
        return
    with LearnRecord(d) as record:
        for digest, _label, raw in held:
            known = record.get(digest)
            if known is not None:
                try:
                    live.unlearn(raw, known[0], known[1])  # type: ignore[attr-defined]
                except ValueError:
                    pass  # the model holds none of that class: nothing to remove


def _decide(report: RetrainReport, has_live: bool, force: bool, dry_run: bool) -> None:
    if not has_live:
        ok, why = True, "there was no live model"
    elif report.new is None:
        ok, why = False, (f"too little feedback to compare the models (held out {report.held_out} of "
                          f"{report.feedback}, need {MIN_HOLDOUT}); the live model stays (use --force to swap anyway)")
    elif report.live is not None and _not_worse(report.new, report.live):
        ok, why = True, "the new model is not worse on the held-out feedback"
    else:
        ok, why = False, "the new model is worse on the held-out feedback; the live model stays"
    if force and not ok:
        ok, why = True, f"forced ({why.split(';')[0]})"
    if dry_run:
        report.decision, report.reason = "dry-run", ("would swap: " if ok else "would keep the live model: ") + why \
            + "; nothing was changed"
    elif ok:
        report.decision, report.reason = "swapped", why
    else:
        report.decision, report.reason = "kept", why


def _swap(d: Path, model: object, rows: list[tuple[str, str, float]], keep_versions: int) -> None:
    """Back up the live model, then replace model and learn record (under the caller's lock)."""
    from mailsift.classifier.learn import has_model
    from mailsift.classifier.persist import ModelError, export_state, load_model, save_model
    from mailsift.classifier.record import LearnRecord
    from mailsift.classifier.versions import record_version

    generation = 0
    if has_model(d):
        try:
            old = load_model(d)
            with LearnRecord(d) as record:
                old_rows = record.rows()
            (d / FEEDBACK_DIR).mkdir(mode=0o700, exist_ok=True)
            export_state(old, d / FEEDBACK_DIR / PREVIOUS_BACKUP, old_rows)
            generation = old.generation
        except ModelError:
            pass  # --force over a broken model: nothing worth keeping
    with LearnRecord(d) as record:
        record.begin()
        try:
            model.generation = generation + 1  # type: ignore[attr-defined]
            record.replace_all(rows)
            record.set_meta("generation", str(model.generation))  # type: ignore[attr-defined]
            save_model(model, d)  # type: ignore[arg-type]
            record_version(d, "retrain", keep_versions, record=record)
            record.commit()
        except BaseException:
            record.rollback()
            raise
