"""`mailsift classify`: score messages with the trained model, like bogofilter.

One line per message: `NAME<TAB>LABEL<TAB>PROBABILITY<TAB>SCORE` (LABEL spam, ham or unsure).
With -p the (single) message is written back with the headers the milter adds, and incoming
X-Spam-*/X-Virus-* headers renamed to *-Untrusted, as the milter does. Every message goes
through the milter's own scan seam (mailsift.milter.scan.scan); with --clamd it is also
scanned for viruses there, as the milter does, and -p adds the X-Virus-* headers.

Exit status, as bogofilter: 0 spam, 1 ham, 2 unsure, 3 error. With several messages:
3 if any message could not be classified, else 0 if any is spam, else 2 if any is unsure,
else 1 (so `mailsift classify *.eml && echo some spam` reads naturally).
"""

from __future__ import annotations

import re
import sys
from argparse import ArgumentParser, Namespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.config import Config
    from mailsift.verdict import Verdict

HELP = "classify messages as spam, ham or unsure (exit 0 spam, 1 ham, 2 unsure, 3 error)"

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
    parser.add_argument("files", nargs="*", metavar="FILE", help="message files; - or none reads stdin")


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


def run(args: Namespace, config: Config) -> int:
    settings = config.classifier
    if args.dbpath is not None or args.required is not None:
        from mailsift.config import override
        settings = override(settings, dbpath=args.dbpath, required=args.required)
    files = args.files or ["-"]
    if args.passthrough and len(files) != 1:
        print("mailsift classify: -p takes exactly one message", file=sys.stderr)
        return EXIT_ERROR
    # What run_quick() left: the daemon's socket answered for the first files, not for the rest.
    done: list[int] = []
    first: bytes | None = None  # the first message left, read already (stdin cannot be re-read)
    left = getattr(args, "route_left", None)
    if left is not None:
        done, first = left
        files = files[len(done):]
    from mailsift.classifier.persist import ModelError, load_model
    from mailsift.verdict import verdict_headers

    try:
        model = load_model(settings.dbpath)
    except ModelError as exc:
        print(f"mailsift classify: {exc}", file=sys.stderr)
        if args.passthrough:  # pass the message through unchanged: never lose mail
            raw = first if first is not None else _read(files[0])
            if raw is not None:
                sys.stdout.buffer.write(raw)
        return EXIT_ERROR
    from mailsift.milter.scan import MessageScanner, StaticModels, scan
    from mailsift.scanner.clamav import ClamdClient

    try:
        clamd = ClamdClient(args.clamd, timeout=config.milter.clamd_timeout) if args.clamd else None
    except ValueError as exc:
        print(f"mailsift classify: {exc}", file=sys.stderr)
        return EXIT_ERROR
    scanner = MessageScanner(clamd, StaticModels(model), required=settings.required,
                             virus_scan=clamd is not None, max_bytes=settings.max_bytes,
                             unsure_points=settings.unsure_points)
    codes: list[int] = done
    out = sys.stdout
    for name in files:
        raw, first = (first, None) if first is not None else (_read(name), None)
        if raw is None:
            codes.append(EXIT_ERROR)
            continue
        outcome = scan(scanner, raw)
        verdict = outcome.verdict
        if outcome.scan_error:
            print(f"mailsift classify: {name}: {outcome.scan_error}", file=sys.stderr)
        codes.append(_exit_for(verdict))
        if args.passthrough:
            sys.stdout.buffer.write(annotate(raw, list(verdict_headers(verdict).headers)))
        else:
            prob = "-" if verdict.probability is None else f"{verdict.probability:.6f}"
            out.write(f"{name}\t{verdict.label}\t{prob}\t{verdict.score:.1f}\n")
    out.flush()
    return combine(codes)


def _read(name: str) -> bytes | None:
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        with open(name, "rb") as fh:
            return fh.read()
    except OSError as exc:
        print(f"mailsift classify: cannot read {name}: {exc.strerror}", file=sys.stderr)
        return None
