"""`mailsift classify`: score messages with the trained model, like bogofilter.

One line per message: `NAME<TAB>LABEL<TAB>PROBABILITY<TAB>SCORE` (LABEL spam, ham or unsure).
With -p the (single) message is written back with the headers the milter adds, and incoming
X-Spam-*/X-Virus-* headers renamed to *-Untrusted, as the milter does. Every message goes
through the milter's own scan seam (mailsift.milter.scan.scan); with --clamd it is also
scanned for viruses there, as the milter does, and -p adds the X-Virus-* headers.

Exit status, as bogofilter: 0 spam, 1 ham, 2 unsure, 3 error. With several messages:
3 if any message could not be classified, else 0 if any is spam, else 2 if any is unsure,
else 1 (so `mailsift classify *.eml && echo some spam` reads naturally).

FILEs may be directories (one message per file), Maildirs (--maildir) or mboxes (--mbox), as
`mailsift learn` takes them. Without --clamd, a few messages are scored by the numpy-free scorer (scorer.py: one process
per message starts in tens of milliseconds); many (BULK or more) by the full model, in
--jobs worker processes. Both give the same verdicts as MessageScanner.score (tested), which
is what the scan seam calls without a virus scanner.
"""

from __future__ import annotations

import itertools
import os
import re
import sys
from argparse import ArgumentParser, Namespace
from collections.abc import Iterator

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from typing import Any

    from mailsift.classifier.settings import ClassifierSettings
    from mailsift.config import Config
    from mailsift.verdict import Verdict

HELP = "classify messages as spam, ham or unsure (exit 0 spam, 1 ham, 2 unsure, 3 error)"
LIGHT_CONFIG = True  # reads config.classifier (and config.milter with --clamd) only
BULK = 64  # messages from which the full model (numpy) and worker processes pay off

EXIT_SPAM, EXIT_HAM, EXIT_UNSURE, EXIT_ERROR = 0, 1, 2, 3

_HEADER_LINE_RE = re.compile(rb"^([!-9;-~]+)([ \t]*:)", re.M)
_BLANK_LINE_RE = re.compile(rb"\r?\n\r?\n")


def add_arguments(parser: ArgumentParser) -> None:
    parser.add_argument("--dbpath", metavar="DIR", help="model directory (default: [classifier] dbpath, models/)")
    parser.add_argument("--required", type=float, metavar="POINTS",
                        help="score at and above which a message is spam (default: [classifier] required, 5.0)")
    parser.add_argument("-p", "--passthrough", action="store_true",
                        help="write the message to stdout with the headers the milter adds")
    parser.add_argument("--clamd", metavar="ADDRESS",
                        help="also scan with clamd (unix:PATH or HOST:PORT), as the milter does")
    parser.add_argument("-j", "--jobs", type=int, metavar="N",
                        help=f"worker processes for {BULK} or more messages (default: the CPUs this may use)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--mbox", dest="kind", action="store_const", const="mbox", help="FILEs are mbox files")
    kind.add_argument("--maildir", dest="kind", action="store_const", const="maildir", help="FILEs are Maildirs")
    kind.add_argument("--dir", dest="kind", action="store_const", const="dir",
                      help="FILEs are directories of one message per file (the default for directories)")
    parser.add_argument("files", nargs="*", metavar="FILE",
                        help="message files (or directories, mboxes, Maildirs); - or none reads stdin")


def annotate(raw: bytes, headers: list[tuple[str, str]]) -> bytes:
    """The message with incoming verdict headers renamed and `headers` appended to its header
    block (where the milter's addheader puts them), in the message's own line ending."""
    from mailsift.untrusted import is_verdict_header, untrusted_name

    m = _BLANK_LINE_RE.search(raw)
    head, rest = (raw[: m.start()], raw[m.start():]) if m else (raw.rstrip(b"\r\n"), b"\n\n")
    eol = b"\r\n" if b"\r\n" in (head[:2000] or raw[:2000]) else b"\n"

    def rename(match: re.Match[bytes]) -> bytes:
        name = match.group(1).decode("latin-1")
        if is_verdict_header(name):
            return untrusted_name(name).encode("latin-1") + match.group(2)
        return match.group(0)

    head = _HEADER_LINE_RE.sub(rename, head)
    added = b"".join(f"{k}: {v}".encode("utf-8").replace(b"\r\n", eol) + eol for k, v in headers)
    if not head:
        return added + rest.lstrip(b"\r\n") if not m else added + rest[len(eol):]
    return head + eol + added.rstrip(b"\r\n") + rest


def _exit_for(verdict: Verdict | None) -> int:
    if verdict is None or verdict.probability is None:
        return EXIT_ERROR
    return {"spam": EXIT_SPAM, "ham": EXIT_HAM, "unsure": EXIT_UNSURE}.get(verdict.label, EXIT_ERROR)


def combine(codes: list[int]) -> int:
    if not codes or EXIT_ERROR in codes:
        return EXIT_ERROR
    if EXIT_SPAM in codes:
        return EXIT_SPAM
    if EXIT_UNSURE in codes:
        return EXIT_UNSURE
    return EXIT_HAM


def _via_socket(path: str, options: tuple[float | None, float | None, int | None], files: list[str],
                passthrough: bool) -> tuple[list[int], bytes | None]:
    """Classify through the daemon's classify socket (mailsift/classifier/route.py) while it
    answers: the exit codes of the files done, and the message it did not answer for (read
    already: stdin cannot be read twice); the rest are scored in-process."""
    from mailsift.classifier.route import RouteError, classify

    codes: list[int] = []
    for name in files:
        raw = _read(name)
        if raw is None:
            codes.append(EXIT_ERROR)
            continue
        try:
            r = classify(path, raw, *options)
        except RouteError:
            return codes, raw
        if r.probability is None:  # the daemon has no model (or failed): this process tries
            return codes, raw
        codes.append({"spam": EXIT_SPAM, "ham": EXIT_HAM, "unsure": EXIT_UNSURE}.get(r.label, EXIT_ERROR))
        if passthrough:
            sys.stdout.buffer.write(annotate(raw, list(r.headers)))
        else:
            sys.stdout.write(f"{name}\t{r.label}\t{r.probability:.6f}\t{r.score:.1f}\n")
    sys.stdout.flush()
    return codes, None


def run_quick(args: Namespace) -> int | None:
    """The socket route (cli.main calls it before the config module and logging are loaded):
    with [classifier] socket in --config, and no --dbpath or --clamd (the daemon serves its own
    model and scans no viruses for classify), each message goes to the daemon. Only
    [classifier] is read here, and only the values the request carries. None: go on with
    run() (no socket, a value [classifier] does not take: run() reports it, or the daemon did
    not answer for some message: run() scores from there on in-process)."""
    if args.config is None or args.dbpath is not None or args.clamd is not None:
        return None
    files = args.files or ["-"]
    if args.passthrough and len(files) != 1:
        return None
    if args.kind is not None or any(f != "-" and os.path.isdir(f) for f in files):
        return None  # directories, Maildirs and mboxes: run() reads them
    import tomllib

    from mailsift.classifier.route import quick_settings

    try:
        with open(args.config, "rb") as fh:
            quick = quick_settings(tomllib.load(fh).get("classifier"), args.required)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    if quick is None:
        return None
    done, first = _via_socket(quick[0], quick[1:], files, args.passthrough)
    if len(done) == len(files):
        return combine(done)
    args.route_left = (done, first)
    return None


def load_classifier(dbpath: str, bulk: bool = False) -> Any:
    """The in-process classifier of the model in `dbpath`: the numpy-free Scorer, or with
    `bulk` (or for a model of the old format, which load_model converts) the full SpamModel.
    Both have verdict(raw, required, max_bytes, unsure_points). Raises ModelError."""
    if not bulk:
        from mailsift.classifier.scorer import load_scorer

        scorer = load_scorer(dbpath)
        if scorer is not None:
            return scorer
    from mailsift.classifier.persist import load_model

    return load_model(dbpath)


def classify_one(classifier: Any, raw: bytes, settings: ClassifierSettings) -> Verdict:
    """The verdict `mailsift classify` gives `raw` without a virus scanner: what the milter's
    MessageScanner.score gives with this classifier and the [classifier] settings."""
    return classifier.verdict(raw, required=settings.required, max_bytes=settings.max_bytes,
                              unsure_points=settings.unsure_points)


class _BuiltIn:
    """The [classifier] values `classify` reads, without --config: the built-in ones (and
    --dbpath, --required), without the settings dataclass (importing dataclasses was a tenth of
    a one-message classify)."""

    __slots__ = ("dbpath", "required", "unsure_points", "max_bytes")

    def __init__(self, dbpath: str | None, required: float | None) -> None:
        from mailsift.classifier import defaults

        self.dbpath = defaults.DBPATH if dbpath is None else dbpath
        self.required = defaults.REQUIRED if required is None else required
        self.unsure_points = defaults.UNSURE_POINTS
        self.max_bytes = defaults.MAX_BYTES


def _settings(args: Namespace, config: Config) -> ClassifierSettings:
    if args.config is None and args.clamd is None:  # config is cli.DefaultConfig: nothing to read
        return _BuiltIn(args.dbpath, args.required)  # type: ignore[return-value]
    import dataclasses

    given = {k: v for k, v in (("dbpath", args.dbpath), ("required", args.required)) if v is not None}
    return dataclasses.replace(config.classifier, **given) if given else config.classifier


def run(args: Namespace, config: Config) -> int:
    from mailsift.classifier.modelcheck import ModelError

    settings = _settings(args, config)
    files = args.files or ["-"]
    one_file = len(files) == 1 and args.kind is None and (files[0] == "-" or not os.path.isdir(files[0]))
    if args.passthrough and not one_file:
        print("mailsift classify: -p takes exactly one message", file=sys.stderr)
        return EXIT_ERROR
    if args.jobs is not None and args.jobs < 1:
        print("mailsift classify: --jobs must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    if one_file:
        total: int | None = 1
    else:
        from mailsift.classifier.sources import count_paths

        total = count_paths(files, args.kind)
    bulk = (total is None or total >= BULK) and not args.clamd
    # What run_quick() left: the daemon's socket answered for the first files, not for the rest.
    done: list[int] = []
    first: bytes | None = None  # the first message left, read already (stdin cannot be re-read)
    left = getattr(args, "route_left", None)
    if left is not None:
        done, first = left
        files = files[len(done):]
    try:
        classifier = load_classifier(settings.dbpath, bulk=bulk)
    except ModelError as exc:
        print(f"mailsift classify: {exc}", file=sys.stderr)
        if args.passthrough:  # pass the message through unchanged: never lose mail
            raw = first if first is not None else _read(files[0])
            if raw is not None:
                sys.stdout.buffer.write(raw)
        return EXIT_ERROR
    items = _messages(files, args.kind)
    if first is not None:  # read by run_quick already
        items = itertools.chain([(files[0], first, False)], _messages(files[1:], args.kind))
    if args.clamd:
        results = _scan_with_clamd(args, config, settings, classifier, items)
        if results is None:
            return EXIT_ERROR
    elif bulk and _jobs(args) > 1:
        results = _in_workers(classifier, settings, items, _jobs(args))
    else:
        results = (_classify_item(classifier, settings, item) for item in items)
    codes: list[int] = done
    out = sys.stdout
    for name, raw, verdict, error in results:
        if error:
            print(f"mailsift classify: {name}: {error}", file=sys.stderr)
        if verdict is None:
            codes.append(EXIT_ERROR)
            continue
        codes.append(_exit_for(verdict))
        if args.passthrough:
            from mailsift.verdict import verdict_headers

            sys.stdout.buffer.write(annotate(raw or b"", list(verdict_headers(verdict).headers)))
        else:
            prob = "-" if verdict.probability is None else f"{verdict.probability:.6f}"
            out.write(f"{name}\t{verdict.label}\t{prob}\t{verdict.score:.1f}\n")
    out.flush()
    return combine(codes)


Result = tuple[str, "bytes | None", "Verdict | None", "str | None"]  # name, message, verdict, error
Item = tuple[str, "bytes | None", bool]  # name, message, True: the message is the file `name`, unread


def _messages(paths: list[str], kind: str | None) -> Iterator[Item]:
    """The messages PATHs hold, in order: a plain file is read by whoever classifies it (a
    worker), messages of directories, Maildirs and mboxes are read here (sources.py)."""
    for p in paths:
        if p == "-" or (kind is None and not os.path.isdir(p)):
            yield p, None, True
        else:
            from mailsift.classifier.sources import iter_paths

            for name, raw in iter_paths([p], kind):
                yield name, raw, False


def _classify_item(classifier: Any, settings: ClassifierSettings, item: Item, keep: bool = True) -> Result:
    name, raw, is_path = item
    if is_path:
        raw = _read(name)
    elif raw is None:
        print(f"mailsift classify: cannot read {name}", file=sys.stderr)
    if raw is None:
        return name, None, None, None
    return name, raw if keep else None, classify_one(classifier, raw, settings), None


def _jobs(args: Namespace) -> int:
    if args.jobs is not None:
        return int(args.jobs)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


_WORKER: tuple[Any, Any] | None = None  # (classifier, settings), inherited by forked workers


def _work(item: Item) -> Result:
    assert _WORKER is not None
    return _classify_item(_WORKER[0], _WORKER[1], item, keep=False)


def _here(item: Item) -> Item:
    """Stdin is read here, not in a worker."""
    name, raw, is_path = item
    if is_path and name == "-":
        return name, _read(name), False
    return item


def _in_workers(classifier: Any, settings: ClassifierSettings, items: Iterator[Item], jobs: int) -> Iterator[Result]:
    """Verdicts from `jobs` forked processes sharing the loaded model, in the order of `items`."""
    import multiprocessing

    global _WORKER
    _WORKER = (classifier, settings)
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        yield from pool.imap(_work, map(_here, items), chunksize=16)


def _scan_with_clamd(args: Namespace, config: Config, settings: ClassifierSettings, classifier: Any,
                     items: Iterator[Item]) -> list[Result] | None:
    """Through the milter's scan seam, with clamd, as the milter scans."""
    from mailsift.milter.scan import MessageScanner, StaticModels, scan
    from mailsift.scanner.clamav import ClamdClient

    try:
        clamd = ClamdClient(args.clamd, timeout=config.milter.clamd_timeout)
    except ValueError as exc:
        print(f"mailsift classify: {exc}", file=sys.stderr)
        return None
    scanner = MessageScanner(clamd, StaticModels(classifier), required=settings.required, virus_scan=True,
                             max_bytes=settings.max_bytes, unsure_points=settings.unsure_points)
    results: list[Result] = []
    for name, raw, is_path in items:
        if is_path:
            raw = _read(name)
        elif raw is None:
            print(f"mailsift classify: cannot read {name}", file=sys.stderr)
        if raw is None:
            results.append((name, None, None, None))
            continue
        outcome = scan(scanner, raw)
        results.append((name, raw, outcome.verdict, outcome.scan_error))
    return results


def _read(name: str) -> bytes | None:
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        with open(name, "rb") as fh:
            return fh.read()
    except OSError as exc:
        print(f"mailsift classify: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return None
