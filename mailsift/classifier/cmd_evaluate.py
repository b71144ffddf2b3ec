"""`mailsift evaluate`: measure the classifier as the TREC spam track does.

    mailsift evaluate --online INDEX --results FILE [--limit N] [--plot PNG] [--dbpath DIR]
                      [--feedback full|errors|implicit:N|none] [--start DBPATH] [--window N]
    mailsift evaluate --cv K (--index INDEX | --ham DIR... --spam DIR...) --results FILE [--seed S]
    mailsift evaluate --results FILE [--plot PNG]      figures of an existing results file

Exit status 0 when the figures were printed, 3 on an error (bad index, unreadable file).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from mailsift.classifier import corpus, evaluate, metrics
from mailsift.classifier.corpus import Entry
from mailsift.config import Config, override

HELP = "evaluate the classifier: TREC online protocol (--online INDEX) or cross-validation (--cv K)"

log = logging.getLogger("mailsift.evaluate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--online", metavar="INDEX",
                      help="immediate-feedback online run over the index's messages, in its order")
    mode.add_argument("--cv", metavar="K", type=int, help="K-fold cross-validation")
    parser.add_argument("--index", metavar="INDEX", help="with --cv: the labelled messages, as an index file")
    parser.add_argument("--ham", metavar="DIR", nargs="+", default=[], help="with --cv: folders of ham")
    parser.add_argument("--spam", metavar="DIR", nargs="+", default=[], help="with --cv: folders of spam")
    parser.add_argument("--results", metavar="FILE", required=True,
                        help="results file, one 'ID TRUTH SCORE JUDGE' line per message (written; "
                             "read when neither --online nor --cv is given)")
    parser.add_argument("--limit", metavar="N", type=int,
                        help="--online: only the first N messages; --cv: a seeded random sample of N")
    parser.add_argument("--plot", metavar="PNG", help="write the ROC curve and score histograms here")
    parser.add_argument("--dbpath", metavar="DIR",
                        help="with --online: save the final model here (default: not saved)")
    parser.add_argument("--feedback", metavar="MODE", default="full",
                        help="with --online: what the model learns after scoring each message: full (every "
                             "message, the TREC protocol; default), errors (only misfiled ones, as users "
                             "correct), implicit:N (errors at once, every other message N messages later), none")
    parser.add_argument("--start", metavar="DBPATH",
                        help="with --online: start from a copy of the model in DBPATH (e.g. the default "
                             "model) instead of an empty one; DBPATH is not changed")
    parser.add_argument("--label-noise", metavar="P", type=float, default=0.0,
                        help="with --online: flip this fraction of the labels learned (seeded by --seed), "
                             "as noisy real feedback does; scoring still uses the true labels")
    parser.add_argument("--window", metavar="N", type=int, default=2500,
                        help="with --online: print what users saw per window of N messages (default 2500)")
    parser.add_argument("--dedup", action=argparse.BooleanOptionalAction, default=None,
                        help="drop repeated Message-IDs and bodies (default: on for folders, off for an index)")
    parser.add_argument("--order-by-date", action=argparse.BooleanOptionalAction, default=False,
                        help="order the messages by their Date header (default: the index's order)")
    parser.add_argument("--seed", type=int, default=0, help="with --cv: shuffling seed (default 0)")
    parser.add_argument("--required", type=float, default=None,
                        help="score at and above which a message is judged spam (default: config, 5.0)")
    parser.add_argument("--worst", metavar="N", type=int, default=0,
                        help="also list the N spammiest ham and hammiest spam")
    parser.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="model_settings",
                        help="a model setting for the evaluated model, e.g. --set alpha=0.02 (repeatable)")


def _setting_value(text: str) -> object:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_model_settings(pairs: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = _setting_value(value)
    return out


class _Progress:
    """A progress line on stderr when it is a terminal, a log line every 10% otherwise."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.next_tick = 0.0
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.tty:
            if now >= self.next_tick or done == total:
                rate = done / max(now - self.start, 1e-9)
                end = "\n" if done == total else ""
                sys.stderr.write(f"\r{self.what}: {done}/{total} ({rate:.0f}/s)" + end)
                sys.stderr.flush()
                self.next_tick = now + 0.5
        else:
            decile = done * 10 // max(total, 1)
            if decile != self.last_decile:
                self.last_decile = decile
                log.info("%s: %d/%d", self.what, done, total)


def _fail(message: str) -> int:
    print(f"mailsift evaluate: {message}", file=sys.stderr)
    return 3


def run(args: argparse.Namespace, config: Config) -> int:
    settings = override(config.classifier, required=args.required)
    required = settings.required
    if args.limit is not None and args.limit < 1:
        return _fail("--limit must be at least 1")
    if args.window < 1:
        return _fail("--window must be at least 1")
    if not 0.0 <= args.label_noise < 0.5:
        return _fail("--label-noise must be at least 0 and below 0.5")
    try:
        args.feedback = evaluate.Feedback.parse(args.feedback)
    except ValueError as exc:
        return _fail(str(exc))
    if args.online is None and (args.start or args.label_noise or str(args.feedback) != "full"):
        return _fail("--feedback, --start and --label-noise go with --online")
    try:
        if args.online is None and args.cv is None:
            if args.index or args.ham or args.spam or args.dbpath:
                return _fail("give --online INDEX or --cv K, or only --results FILE to re-read a run")
            records = evaluate.read_results(args.results)
        else:
            entries, dedup_default = _entries(args)
            dedup = dedup_default if args.dedup is None else args.dedup
            if dedup or args.order_by_date:
                stats = corpus.StreamStats()
                entries = corpus.build_stream(entries, dedup=dedup, order=args.order_by_date, stats=stats)
                for line in stats.lines():
                    log.info("%s", line)
            if args.limit is not None and args.online is not None:
                entries = entries[: args.limit]  # the first N of the stream
            elif args.limit is not None and args.limit < len(entries):
                # folders list all ham before all spam: cross-validate a seeded sample instead
                import random

                keep = set(random.Random(args.seed).sample(range(len(entries)), args.limit))
                entries = [e for i, e in enumerate(entries) if i in keep]
            records = _evaluate(args, entries, required)
    except (corpus.IndexFileError, evaluate.EvaluateError, ValueError) as exc:
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{getattr(exc, 'filename', '') or ''} {exc.strerror or exc}".strip())

    try:
        figs = metrics.figures(records)
    except ValueError as exc:
        return _fail(str(exc))
    print("\n".join(figs.lines()))
    if args.online is not None:
        print(f"feedback        {args.feedback}" + (f", start {args.start}" if args.start else ", empty model")
              + (f", label noise {args.label_noise:g}" if args.label_noise else ""))
        print(metrics.decides_line(records))
        print("\n".join(metrics.window_lines(records, args.window)))
    if args.worst:
        ham, spam = evaluate.worst(records, args.worst)
        print("spammiest ham:  " + ", ".join(f"{r.id} {r.score:.4g}" for r in ham))
        print("hammiest spam:  " + ", ".join(f"{r.id} {r.score:.4g}" for r in spam))
    if args.plot:
        from mailsift.classifier.plot import write_plot

        title = f"mailsift evaluate: {Path(args.results).name}"
        try:
            write_plot(records, args.plot, figs, title=title)
        except OSError as exc:
            return _fail(f"cannot write plot {args.plot}: {exc.strerror or exc}")
    return 0


def _entries(args: argparse.Namespace) -> tuple[list[Entry], bool]:
    """The labelled messages and whether to deduplicate them by default."""
    if args.online is not None:
        if args.ham or args.spam or args.index:
            raise ValueError("--online takes its messages from INDEX only")
        return corpus.read_index(args.online), False
    if args.cv < 2:
        raise ValueError("--cv needs K >= 2")
    if args.dbpath:
        raise ValueError("--dbpath is for --online only (cross-validation trains K models)")
    if args.index and (args.ham or args.spam):
        raise ValueError("give --index or --ham/--spam folders, not both")
    if args.index:
        return corpus.read_index(args.index), False
    if not args.ham or not args.spam:
        raise ValueError("--cv needs --index INDEX or both --ham DIR... and --spam DIR...")
    entries: list[Entry] = []
    for d in args.ham:
        entries += corpus.folder_entries(d, "ham")
    for d in args.spam:
        entries += corpus.folder_entries(d, "spam")
    return entries, True


def _evaluate(args: argparse.Namespace, entries: list[Entry], required: float) -> list[metrics.Record]:
    from mailsift.classifier.api import ModelError, load_model, new_model, save_model

    settings = parse_model_settings(args.model_settings)
    try:
        new_model(**settings)  # unknown or invalid settings fail here, before any file is written
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad model setting: {exc}") from None
    start = None
    if args.online is not None and args.start:
        try:
            start = load_model(args.start)
        except ModelError as exc:
            raise evaluate.EvaluateError(f"cannot start from {args.start}: {exc}") from None
        if settings:
            start.settings = start.with_settings(**settings)
            start.settings.validate()
            start.refresh()
    results = Path(args.results)
    if results.parent != Path(""):
        results.parent.mkdir(parents=True, exist_ok=True)
    with open(results, "w", encoding="utf-8", errors="surrogateescape") as out:
        if args.online is not None:
            model = start if start is not None else new_model(**settings)
            records = evaluate.run_feedback(entries, model, args.feedback, out, required=required,
                                            progress=_Progress("online"), label_noise=args.label_noise,
                                            seed=args.seed)
            if args.dbpath:
                try:
                    save_model(model, args.dbpath)
                except ModelError as exc:
                    raise evaluate.EvaluateError(f"cannot save the model to {args.dbpath}: {exc}") from None
                log.info("saved the final model to %s", args.dbpath)
        else:
            records = evaluate.run_cv(entries, args.cv, lambda: new_model(**settings), out, required=required,
                                      seed=args.seed, progress=_Progress(f"{args.cv}-fold cv"))
    return records
