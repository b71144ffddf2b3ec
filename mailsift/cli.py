"""The `mailsift` command and its subcommands.

Each subcommand lives in the module named in COMMANDS, which provides:

    HELP: str                                    one line for `mailsift --help`
    add_arguments(parser: ArgumentParser) -> None
    run(args: Namespace, config: Config) -> int  the exit status

Those modules import nothing heavy at module level (scikit-learn, numpy, pymilter):
every subcommand's parser is built on each start, and `mailsift policy` should not pay for
`import sklearn`. Heavy imports go inside run().
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from mailsift import __version__
from mailsift.config import Config, ConfigError, load_config
from mailsift.logsetup import setup_logging

COMMANDS: dict[str, str] = {
    "learn": "mailsift.classifier.cmd_learn",
    "classify": "mailsift.classifier.cmd_classify",
    "evaluate": "mailsift.classifier.cmd_evaluate",
    "model": "mailsift.classifier.cmd_model",
    "retrain": "mailsift.feedback.cmd_retrain",
    "feedback": "mailsift.feedback.cmd_feedback",
    "milter": "mailsift.milter.cmd",
    "policy": "mailsift.policy.cmd",
    "serve": "mailsift.serve.cmd",
    "user": "mailsift.store.cmd_user",
    "cert": "mailsift.cmd_cert",
    "postfix-config": "mailsift.postfix_config",
    "check-config": "mailsift.ops.cmd_check_config",
}


def _load(module_name: str) -> ModuleType | None:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:  # a part not built yet
        if exc.name == module_name:
            return None
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailsift",
        description="Mail filtering and mail store for Postfix.",
    )
    parser.add_argument("--version", action="version", version=f"mailsift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = _load(module_name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        p.add_argument("--config", metavar="FILE", help="TOML configuration file (default: none, built-in defaults)")
        p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default: config or INFO)")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        config: Config = load_config(args.config)
    except ConfigError as exc:
        if not getattr(args._module, "CHECKS_CONFIG", False):  # check-config reports it itself
            print(f"mailsift: {exc}", file=sys.stderr)
            return 3
        config = Config()
    setup_logging(args.log_level or config.logging.level)
    try:
        return int(args._module.run(args, config) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # last resort: a clear message, non-zero exit
        logging.getLogger("mailsift").exception("mailsift %s failed", args.command)
        return 3


if __name__ == "__main__":
    sys.exit(main())
