"""`mailsift serve`: the store's daemon (LMTP delivery, POP3, IMAP, the Postfix recipient lookup)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable

from mailsift import aioloop
from mailsift.config import Config, override
from mailsift.ops import metrics

HELP = "run the mail store: LMTP delivery, POP3/IMAP, the Postfix recipient lookup (until SIGTERM)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mail-root", metavar="DIR", help="Maildir++ root (ROOT/DOMAIN/USER/)")
    parser.add_argument("--users", metavar="FILE", help="user database")
    for proto in ("lmtp", "pop3", "pop3s", "imap", "imaps", "lookup"):
        parser.add_argument(f"--{proto}", metavar="WHERE", help=f"{proto} listener: unix:PATH, HOST:PORT or off")


def _feedback_starter(config: Config, users: str | None = None) -> Callable[[Any], Any] | None:
    """Learning from users' Junk moves runs inside `mailsift serve` when the feedback part and its
    [feedback] settings are present (mailsift.feedback.learner.start_learner); with [classifier]
    share, so does the share agent (a trainer candidate: mailsift.share.agent)."""
    feedback = getattr(config, "feedback", None)
    share = config.classifier.share
    try:
        from mailsift.feedback.learner import start_learner
    except ModuleNotFoundError:
        feedback = None
    if feedback is None and not share:
        return None
    dbpath, keep = config.classifier.dbpath, config.classifier.keep_versions

    def start(store: Any) -> Any:
        agent = None
        if share:
            from mailsift.share.agent import start_agent

            model_dir = feedback.model_dir(dbpath) if feedback is not None else dbpath
            agent = start_agent(config.classifier, model_dir, trainer=True)
        learner = start_learner(store, feedback, dbpath, users, keep, share=bool(share)) if feedback else None
        return _Handles(learner, agent)

    return start


class _Handles:
    """Stops the feedback learner (its last judgements reach the outbox), then the share agent."""

    def __init__(self, *handles: Any) -> None:
        self.handles = [h for h in handles if h is not None]

    def stop(self, timeout: float = 30.0) -> None:
        for h in self.handles:
            h.stop(timeout)


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.serve.server import ServeError, serve

    settings = override(config.store, mail_root=args.mail_root, users=args.users, lmtp=args.lmtp,
                        pop3=args.pop3, pop3s=args.pop3s, imap=args.imap, imaps=args.imaps, lookup=args.lookup)
    try:
        settings.validate()
    except ValueError as exc:
        print(f"mailsift serve: {exc}", file=sys.stderr)
        return 3
    metrics.start_or_exit(config.metrics, "store", config.feedback.model_dir(config.classifier.dbpath))
    try:
        return aioloop.run(serve(settings, on_start=_feedback_starter(config, settings.users)))
    except ServeError as exc:
        logging.getLogger("mailsift.serve").error("%s", exc)
        print(f"mailsift serve: {exc}", file=sys.stderr)
        return 3
