"""`mailsift postfix-config`: the `postconf -e` lines that wire mailsift into Postfix.

Each part that Postfix talks to contributes its lines through a module exposing
`postconf_lines(config: Config) -> list[str]` (comments start with '#'):
mailsift.milter.postfix, mailsift.store.postfix, mailsift.policy.postfix.
"""

from __future__ import annotations

import argparse
import importlib
import shlex

from mailsift.config import Config

HELP = "print the postconf lines that wire the milter, LMTP delivery and the policy service into Postfix"

PARTS = ("milter", "store", "policy")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--part", choices=PARTS, action="append",
                        help="only this part (repeatable; default: all)")


def collect(config: Config, parts: tuple[str, ...] | list[str] = PARTS) -> list[str]:
    lines: list[str] = []
    for part in parts:
        name = f"mailsift.{part}.postfix"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        lines.append(f"# --- {part} ---")
        lines.extend(as_postconf(line) for line in module.postconf_lines(config))
    return lines


def as_postconf(line: str) -> str:
    """Every setting as a `postconf -e 'name = value'` command; comments pass through."""
    text = line.strip()
    if not text or text.startswith("#") or text.startswith("postconf "):
        return line
    return "postconf -e " + shlex.quote(text)


def run(args: argparse.Namespace, config: Config) -> int:
    for line in collect(config, args.part or PARTS):
        print(line)
    return 0
