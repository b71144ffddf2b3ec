"""`mailsift check-config`: check the config file and what it names, starting nothing."""

from __future__ import annotations

import argparse
import sys

from mailsift.config import Config

HELP = "check the config file and what it names (paths, modes, TLS pair, clamd, Redis, the model)"

# cli.main runs this command even when the file does not load: it reads the file itself,
# section by section, and reports every problem instead of the first.
CHECKS_CONFIG = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="print problems only")


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.ops.checkconfig import check_file

    where = args.config or "(no file: the built-in defaults)"
    problems = check_file(args.config)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{where}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"{where}: OK")
    return 0
