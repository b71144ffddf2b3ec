"""`mailsift policy`: the greylisting policy service for Postfix's check_policy_service."""

from __future__ import annotations

import argparse
import logging
import sys

from mailsift import aioloop
from mailsift.config import Config, override
from mailsift.ops import metrics

HELP = "greylisting policy service for Postfix (check_policy_service), in the foreground"

log = logging.getLogger("mailsift.policy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="unix:PATH|HOST:PORT",
                        help="where to listen (default: [policy] socket, "
                             "unix:/var/spool/postfix/private/mailsift-policy)")
    parser.add_argument("--db", metavar="sqlite:PATH|redis://HOST:PORT/N",
                        help="the greylist store (default: [policy] db, sqlite:/var/lib/mailsift/greylist.sqlite)")
    parser.add_argument("--delay", type=int, metavar="SECONDS",
                        help="how long a new triplet is deferred (default: [policy] delay, 300)")
    parser.add_argument("--clock-offset-file", metavar="FILE", help=argparse.SUPPRESS)
    # FOR TESTING ONLY: seconds read from FILE at each request are added to the clock.


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.policy.backends import open_store
    from mailsift.policy.greylist import Greylister, OffsetClock
    from mailsift.policy.server import parse_listen, serve

    settings = override(config.policy, socket=args.socket, db=args.db, delay=args.delay)
    try:
        settings.validate()
    except ValueError as exc:
        print(f"mailsift policy: {exc}", file=sys.stderr)
        return 2
    listen = parse_listen(settings.socket)
    metrics.start_or_exit(config.metrics, "policy")
    store = open_store(settings.db)
    if args.clock_offset_file:
        log.warning("TESTING: clock offset read from %s", args.clock_offset_file)
        greylister = Greylister(settings, store, clock=OffsetClock(args.clock_offset_file))
    else:
        greylister = Greylister(settings, store)
    log.info("greylisting with %s: delay %ds, retry window %ds, max age %ds, auto_allow %d",
             settings.db, settings.delay, settings.retry_window, settings.max_age, settings.auto_allow)
    return aioloop.run(serve(greylister, listen, settings.socket_mode, settings.idle_timeout,
                             settings.user, settings.max_connections, settings.socket_group))
