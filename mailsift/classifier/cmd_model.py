"""`mailsift model list` and `mailsift model rollback [VERSION]`: the kept model versions."""

from __future__ import annotations

import argparse
import sys
from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.config import Config

HELP = "the model's history: list the kept versions, roll back to one (list, rollback)"


def add_arguments(parser: ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    lst = sub.add_parser("list", help="the kept versions, newest first; * marks the live one")
    back = sub.add_parser("rollback", help="make a kept version the live model again, with its learn record")
    back.add_argument("version", nargs="?", metavar="VERSION",
                      help="a name from `model list`, or its generation (default: the one before the live one)")
    for p in (lst, back):
        p.add_argument("--dbpath", metavar="DIR", help="model directory (default: [classifier] dbpath, models/)")
        # also after the action (`mailsift model list --config FILE`); SUPPRESS keeps one given before it
        p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="TOML configuration file")
        p.add_argument("--log-level", default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING, ERROR")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Each save of the model (learn, the feedback learner (one per hour), retrain, restore,\n"
                     "rollback, the default model) is kept under DBPATH/versions/, the newest [classifier]\n"
                     "keep_versions of them.\n"
                     "Exit status: 0 done, 1 no such version or the version is unusable.")


def run(args: Namespace, config: Config) -> int:
    from mailsift.config import override

    settings = override(config.classifier, dbpath=getattr(args, "dbpath", None))
    if args.action == "list":
        try:
            return _list(settings.dbpath, settings.keep_versions)
        except OSError as exc:
            print(f"mailsift model list: cannot read {exc.filename or settings.dbpath}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 1
    return _rollback(settings.dbpath, args.version, settings.keep_versions)


def _date(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _list(dbpath: str, keep: int) -> int:
    from mailsift.classifier.versions import list_versions, live_version

    versions = list_versions(dbpath)
    if not versions:
        why = "keep_versions = 0" if keep == 0 else "nothing saved since history began"
        print(f"no model versions kept in {dbpath} ({why})")
        return 0
    live = live_version(dbpath, versions)
    width = max(len(v.name) for v in versions)
    print(f"  {'VERSION':<{width}}  {'DATE (UTC)':<19}  {'SOURCE':<8}  {'HAM':>7}  {'SPAM':>7}  "
          f"{'RECORD HAM':>10}  {'RECORD SPAM':>11}")
    for v in versions:
        mark = "*" if live is not None and v.name == live.name else " "
        note = f"  (of {v.meta['restored_from']})" if v.meta.get("restored_from") else ""
        print(f"{mark} {v.name:<{width}}  {_date(v.saved_at)}  {v.source:<8}  {v.meta.get('n_ham', '?'):>7}  "
              f"{v.meta.get('n_spam', '?'):>7}  {v.meta.get('record_ham', '?'):>10}  "
              f"{v.meta.get('record_spam', '?'):>11}{note}")
    if live is None:
        print("(the live model is not among the kept versions)")
    return 0


def _rollback(dbpath: str, wanted: str | None, keep: int) -> int:
    from mailsift.classifier.versions import VersionError, rollback

    try:
        target, new = rollback(dbpath, wanted, keep)
    except VersionError as exc:
        print(f"mailsift model rollback: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"mailsift model rollback: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    as_ = f" as version {new.name}" if new is not None else ""
    print(f"rolled back to version {target.name}: {target.meta.get('n_ham')} ham, {target.meta.get('n_spam')} spam, "
          f"learn record {target.meta.get('record_ham')} ham, {target.meta.get('record_spam')} spam{as_}")
    return 0
