"""`mailsift feedback status`: what the feedback learner of `mailsift serve` holds: implicit
confirmations pending, judgements learned per user today, and those deferred over the daily cap."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.config import Config

HELP = "show the feedback learner's state: pending implicit confirmations, today's learning per user, deferrals"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["status"],
                        help="status: pending confirmations, learned and deferred judgements per user")
    parser.add_argument("--dbpath", metavar="DIR",
                   help="model directory (default: [feedback] dbpath, else [classifier] dbpath)")


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.feedback.clock import clock_from_env
    from mailsift.feedback.settings import FeedbackSettings
    from mailsift.feedback.state import State, day_of

    feedback = getattr(config, "feedback", None) or FeedbackSettings()
    dbpath = args.dbpath or feedback.model_dir(config.classifier.dbpath)
    now = clock_from_env()() if feedback.implicit else time.time()
    day = day_of(now)
    print(f"dbpath: {dbpath}")
    print(f"implicit feedback: {'on, confirmed after ' + feedback.confirm_after if feedback.implicit else 'off'}")
    cap = feedback.max_learn_per_user_day
    print(f"daily cap per user: {cap if cap else 'none'}")
    try:
        state = State(dbpath, readonly=True)
    except (FileNotFoundError, OSError):
        print("no learner state yet (mailsift serve has not learned here)")
        return 0
    try:
        s = state.summary(day)
    except Exception as exc:  # noqa: BLE001 - a locked or damaged file: say so
        print(f"mailsift feedback: cannot read {state.path}: {exc}", file=sys.stderr)
        return 1
    finally:
        state.close()
    pending: dict = s["pending"]  # type: ignore[assignment]
    print(f"pending confirmations: {pending.get('ham', 0)} ham, {pending.get('spam', 0)} spam")
    date = datetime.datetime.fromtimestamp(day * 86400, datetime.timezone.utc).date().isoformat()
    today: dict = s["today"]  # type: ignore[assignment]
    deferred: dict = s["deferred"]  # type: ignore[assignment]
    dropped: dict = s["dropped"]  # type: ignore[assignment]
    print(f"deferred over the cap: {sum(deferred.values())} judgement(s)"
          + (f", {sum(dropped.values())} more only journalled (deferred queue full)" if dropped else ""))
    for user in sorted(set(today) | set(deferred) | set(dropped)):
        learned, deferred_today, _ = today.get(user, (0, 0, 0))
        print(f"user {user}: learned {learned} today ({date} UTC), deferred {deferred_today} today, "
              f"{deferred.get(user, 0)} waiting" + (f", {dropped[user]} not queued" if user in dropped else ""))
    return 0
