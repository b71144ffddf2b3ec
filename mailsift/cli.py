"""The `mailsift` command and its subcommands.

Each subcommand lives in the module named in COMMANDS, which provides:

    HELP: str                                    one line for `mailsift --help`
    add_arguments(parser: ArgumentParser) -> None
    run(args: Namespace, config: Config) -> int  the exit status
    run_quick(args: Namespace) -> int | None     optional: tried first, before the config is
                                                 loaded; None means go on with run()

Those modules import nothing heavy at module level (scikit-learn, numpy, pymilter), and
heavy imports go inside run(). Only the named subcommand's module is imported and its parser
built (all of them for `mailsift --help`), and the config is loaded after parsing: a
`mailsift classify` per message through the classify socket imports little beyond argparse.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING

from mailsift import __version__

if TYPE_CHECKING:
    from mailsift.config import Config

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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of `only` (its module alone is imported: a
    `mailsift classify` per message pays for nothing else)."""
    parser = argparse.ArgumentParser(
        prog="mailsift",
        description="Mail filtering and mail store for Postfix.",
    )
    parser.add_argument("--version", action="version", version=f"mailsift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
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
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(words[0] if words and words[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help(sys.stderr)
        return 2
    quick = getattr(args._module, "run_quick", None)  # a path that needs no config module
    if quick is not None:
        try:
            code = quick(args)
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return 0
        except Exception as exc:  # no logging yet: a clear message, non-zero exit
            print(f"mailsift {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 3
        if code is not None:
            return int(code)
    from mailsift.config import Config, ConfigError, load_config
    from mailsift.logsetup import setup_logging

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
        import logging

        logging.getLogger("mailsift").exception("mailsift %s failed", args.command)
        return 3


if __name__ == "__main__":
    sys.exit(main())
