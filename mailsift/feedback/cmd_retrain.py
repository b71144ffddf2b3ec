"""`mailsift retrain`: rebuild the spam model from users' feedback; swap it in when it is not worse."""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.config import Config
    from mailsift.feedback.retrain import RetrainReport

HELP = "rebuild the spam model from users' Junk feedback (and training folders); swap it in if not worse"


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--dbpath", metavar="DIR",
                        help="model directory (default: [feedback] dbpath, else [classifier] dbpath)")
    parser.add_argument("--ham", metavar="DIR", nargs="+", action="extend", default=[],
                        help="folders of ham to train on as well (one message per file, or Maildirs)")
    parser.add_argument("--spam", metavar="DIR", nargs="+", action="extend", default=[],
                        help="folders of spam to train on as well")
    parser.add_argument("--maildir", action="store_true", help="the --ham/--spam folders are Maildirs "
                        "(cur/ and new/; detected on their own when cur/ exists)")
    parser.add_argument("--holdout", metavar="FRACTION", type=float, default=0.2,
                        help="share of the most recent feedback held out to compare the models (default 0.2)")
    parser.add_argument("--force", action="store_true", help="swap the new model in even if it is worse")
    parser.add_argument("--dry-run", action="store_true", help="build and compare, change nothing")
    parser.add_argument("--report", metavar="DIR",
                        help="write a report here (created if missing): retrain-report.txt, retrain-report.png "
                             "(ROC curves and score histograms of both models on the held-out feedback) and "
                             "each model's results file")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("The feedback spool (DBPATH/feedback/) holds what users moved into and out of Junk.\n"
                     "Exit status: 0 done (swapped, kept or dry run), 1 cannot retrain, 2 done but the --report\n"
                     "could not be written (the retrain's decision stands).")


def run(args: Namespace, config: Config) -> int:
    from mailsift.classifier.persist import ModelError
    from mailsift.feedback.retrain import RetrainError, retrain
    from mailsift.feedback.settings import FeedbackSettings

    feedback = getattr(config, "feedback", None) or FeedbackSettings()
    dbpath = args.dbpath or feedback.model_dir(config.classifier.dbpath)
    if not 0.0 <= args.holdout < 1.0:
        print("mailsift retrain: --holdout must be at least 0 and below 1", file=sys.stderr)
        return 1
    share = config.classifier.share if not args.dry_run else ""
    try:
        report = _retrain_shared(args, config, dbpath, share) if share else \
            retrain(dbpath, args.ham, args.spam, "maildir" if args.maildir else None, args.holdout,
                    args.force, args.dry_run, config.classifier.required, config.classifier.keep_versions)
    except (RetrainError, ModelError) as exc:
        print(f"mailsift retrain: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"mailsift retrain: cannot read or write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"dbpath: {dbpath}")
    for line in report.lines():
        print(line)
    for name in report.unreadable[:20]:
        print(f"mailsift retrain: cannot read {name}", file=sys.stderr)
    if args.report:
        return _write_report(report, args.report, dbpath)
    return 0


def _retrain_shared(args: Namespace, config: Config, dbpath: str, share: str) -> RetrainReport:
    """[classifier] share on: retrain as the trainer, holding its lease (the serve that holds it lets
    it go meanwhile), from the newest published version, and publish a swapped-in model as the
    next version. RetrainError when the lease cannot be had or kept, or Redis is away."""
    from mailsift.feedback.retrain import RetrainError, retrain
    from mailsift.resp import RespError
    from mailsift.share.channel import ChecksumError
    from mailsift.share.lease import LeaseUnavailable, OneOffTrainer

    c = config.classifier
    try:
        with OneOffTrainer(share, dbpath, c.share_lease_seconds, c.keep_versions) as trainer:
            trainer.follow()
            report = retrain(dbpath, args.ham, args.spam, "maildir" if args.maildir else None, args.holdout,
                             args.force, False, c.required, c.keep_versions)
            if report.decision == "swapped":
                try:
                    version = trainer.publish()
                except (LeaseUnavailable, RespError) as exc:
                    raise RetrainError(f"share: {exc}; the retrained model is live in {dbpath} but not "
                                       "published (the next published version replaces it)") from None
                report.reason += f"; published as version {version}"
    except (LeaseUnavailable, RespError, ChecksumError) as exc:
        raise RetrainError(f"share: {exc}") from None
    return report


def _write_report(report: RetrainReport, directory: str, dbpath: str) -> int:
    """The report comes after the retrain's work: a report that cannot be written never costs
    the model its nightly swap (exit 2)."""
    from mailsift.feedback.retrain_report import write_report

    try:
        paths = write_report(report, directory, dbpath)
    except OSError as exc:
        where = exc.filename or directory
        print(f"mailsift retrain: cannot write the report to {where}: {exc.strerror or exc} "
              f"(the retrain itself is done: {report.decision})", file=sys.stderr)
        return 2
    print(f"report: {', '.join(str(p) for p in paths)}")
    return 0
