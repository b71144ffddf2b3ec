"""`mailsift learn`: train the spam model, with sa-learn's semantics."""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.config import Config

HELP = "train the spam model from messages (like sa-learn): --spam, --ham, --forget, --dump, ..."


def add_arguments(parser: ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--spam", action="store_true", help="learn PATHs as spam")
    what.add_argument("--ham", action="store_true", help="learn PATHs as ham (not spam)")
    what.add_argument("--forget", action="store_true", help="remove PATHs from the model")
    what.add_argument("--dump", action="store_true", help="print counts of ham, spam, tokens and the last change")
    what.add_argument("--backup", metavar="FILE", help="write the model and learn record to FILE (portable .npz)")
    what.add_argument("--restore", metavar="FILE", help="replace the model and learn record by a backup")
    what.add_argument("--clear", action="store_true", help="delete the model and the learn record")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--mbox", dest="kind", action="store_const", const="mbox", help="PATHs are mbox files")
    kind.add_argument("--maildir", dest="kind", action="store_const", const="maildir", help="PATHs are Maildirs")
    kind.add_argument("--dir", dest="kind", action="store_const", const="dir",
                      help="PATHs are directories of one message per file (the default for directories)")
    parser.add_argument("--dbpath", metavar="DIR", help="model directory (default: [classifier] dbpath, models/)")
    bar = parser.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show a progress bar on stderr (default: when stderr is a terminal)")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    parser.add_argument("-j", "--jobs", type=int, metavar="N",
                        help="processes tokenising messages (default: the CPUs this may use)")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="message files, directories, mboxes or Maildirs; - is stdin")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Learning a message twice with the same label does nothing; with the other label it moves.\n"
                     "Exit status: 0 done, 1 some input unreadable or the model refused.")


def run(args: Namespace, config: Config) -> int:
    from mailsift.classifier.persist import ModelError
    from mailsift.config import override

    settings = override(config.classifier, dbpath=args.dbpath)
    dbpath = settings.dbpath
    try:
        if args.dump:
            return _dump(dbpath)
        if args.clear:
            from mailsift.classifier.learn import clear

            clear(dbpath)
            print(f"cleared the model and learn record in {dbpath}")
            return 0
        if args.backup:
            return _backup(dbpath, args.backup)
        if args.restore:
            return _restore(dbpath, args.restore, settings.keep_versions)
        return _learn(args, dbpath, settings.keep_versions, settings.share)
    except ModelError as exc:
        print(f"mailsift learn: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable model directory, a full disk: nothing half-written
        where = f" {exc.filename}" if exc.filename else ""
        print(f"mailsift learn: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _learn(args: Namespace, dbpath: str, keep_versions: int, share: str = "") -> int:
    from mailsift.classifier.learn import Learner, LearnStats, Progress, count_paths, default_jobs, iter_paths

    if not args.paths:
        print("mailsift learn: give at least one PATH (or - for stdin)", file=sys.stderr)
        return 1
    if args.jobs is not None and args.jobs < 1:
        print("mailsift learn: --jobs must be at least 1", file=sys.stderr)
        return 1
    total = count_paths(args.paths, args.kind)
    # workers pay off from a few dozen messages (forking them costs a few ms each)
    jobs = args.jobs or (default_jobs() if total is None or total >= 32 else 1)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    verb = "forget" if args.forget else ("learn spam" if args.spam else "learn ham")
    progress = Progress(total, verb) if show else None
    stats = LearnStats()
    outbox = None
    if share:  # [classifier] share: what is learned here goes to every host (mailsift/share/)
        from mailsift.share.outbox import Outbox
        outbox = Outbox(dbpath)
    with Learner(dbpath, source="learn", keep_versions=keep_versions, outbox=outbox) as learner:
        messages = iter_paths(args.paths, args.kind)
        if args.forget:
            learner.forget_many(messages, stats, progress)
        else:
            learner.learn_many(messages, "spam" if args.spam else "ham", stats, progress, jobs=jobs)
        learner.save()
        model = learner.model
    if outbox is not None:
        from mailsift.share.agent import send_outbox
        outbox.close()
        sent, left = send_outbox(share, dbpath)
        print(f"shared {sent} learn event(s)" + (f"; {left} wait in {outbox.path} for the share agent" if left else ""))
    if progress is not None:
        progress.finish(stats)
    for name in stats.unreadable[:20]:
        print(f"mailsift learn: cannot read {name}", file=sys.stderr)
    if args.forget:
        print(f"Forgot {stats.forgotten} message(s) ({stats.examined} examined: "
              f"{stats.unknown} not learned, {len(stats.unreadable)} unreadable)")
    else:
        label = "spam" if args.spam else "ham"
        other = "ham" if args.spam else "spam"
        print(f"Learned {stats.learned} message(s) as {label} ({stats.examined} examined: "
              f"{stats.moved} moved from {other}, {stats.skipped} already learned, "
              f"{len(stats.unreadable)} unreadable)")
    print(f"Model now holds {model.n_ham_} ham and {model.n_spam_} spam")
    return 1 if stats.unreadable else 0


def _dump(dbpath: str) -> int:
    import datetime
    import os
    from pathlib import Path

    from mailsift.classifier.persist import MODEL_FILE, load_model, read_sidecar
    from mailsift.classifier.record import RECORD_FILE, LearnRecord

    model = load_model(dbpath)
    changed = datetime.datetime.fromtimestamp(model.changed_at, datetime.timezone.utc) if model.changed_at else None
    print(f"dbpath: {dbpath}")
    print(f"ham: {model.n_ham_}")
    print(f"spam: {model.n_spam_}")
    print(f"tokens: {model.n_tokens()}")
    print(f"last change: {changed.isoformat(timespec='seconds') if changed else 'never'}")
    readiness = model.readiness()
    print("ready: " + ("yes" if readiness.ready else f"no, {readiness.note}"))
    if model.prior_counts.sum() > 0:
        print(f"prior: {int(model.prior_counts[0])} ham, {int(model.prior_counts[1])} spam from public corpora; "
              f"this site taught {model.local_learned()}")
    print("guard: " + (f"on, {readiness.note}" if readiness.guard else "off"))
    pseudo = model.chars.pseudo
    print("self-training: " + (f"on, {pseudo[0]} ham and {pseudo[1]} spam pseudo-labels learned so far"
                               if model.self_trains() else "off"))
    meta = read_sidecar(dbpath)  # after load_model: a model of the old format is converted by now
    print(f"model file: {os.path.getsize(Path(dbpath) / MODEL_FILE)} bytes, format {meta.get('format_version')}")
    if (Path(dbpath) / RECORD_FILE).exists():
        with LearnRecord(dbpath) as record:
            counts = record.counts()
            gen = record.get_meta("generation")
        print(f"learn record: {counts['ham']} ham, {counts['spam']} spam")
        if gen is not None and int(gen) != model.generation:
            print(f"warning: learn record is at generation {gen}, model at {model.generation} "
                  "(an interrupted learn run?): relearning may double-count", file=sys.stderr)
    return 0


def _backup(dbpath: str, target: str) -> int:
    from mailsift.classifier.persist import export_state, load_model
    from mailsift.classifier.record import LearnRecord

    model = load_model(dbpath)
    with LearnRecord(dbpath) as record:
        rows = record.rows()
    export_state(model, target, rows)
    print(f"backed up {model.n_ham_} ham, {model.n_spam_} spam and {len(rows)} learn record entries to {target}")
    return 0


def _restore(dbpath: str, source: str, keep_versions: int) -> int:
    import fcntl
    from pathlib import Path

    from mailsift.classifier.learn import LOCK_FILE
    from mailsift.classifier.persist import ModelError, import_state, read_sidecar, save_model
    from mailsift.classifier.record import LearnRecord
    from mailsift.classifier.versions import record_version

    model, rows = import_state(source)
    Path(dbpath).mkdir(parents=True, exist_ok=True)
    with open(Path(dbpath) / LOCK_FILE, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:  # generations only grow, so the model history's names stay in order
            live = int(read_sidecar(dbpath).get("generation", 0))
        except (ModelError, ValueError, TypeError):
            live = 0
        with LearnRecord(dbpath) as record:
            record.begin()
            model.generation = max(model.generation, live) + 1
            record.replace_all(rows)
            record.set_meta("generation", str(model.generation))
            save_model(model, dbpath)
            record_version(dbpath, "restore", keep_versions, record=record)
            record.commit()
    print(f"restored {model.n_ham_} ham, {model.n_spam_} spam and {len(rows)} learn record entries from {source}")
    return 0
