"""The `mailsift` command and its subcommands.

Each subcommand lives in the module named in COMMANDS, which provides:

    HELP: str                                    one line for `mailsift --help`
    add_arguments(parser: ArgumentParser) -> None
    run(args: Namespace, config: Config) -> int  the exit status
    run_quick(args: Namespace) -> int | None     optional: tried first, before the config is
                                                 loaded; None means go on with run()
    LIGHT_CONFIG: bool (optional)                run() only reads config.<section>: without
                                                 --config it gets a DefaultConfig

Those modules import nothing heavy at module level (scikit-learn, numpy, pymilter). A run of
one subcommand builds only that subcommand's parser (`mailsift --help` builds them all), and
without --config the configuration is the built-in defaults, made section by section as the
command reads them: `mailsift classify` in a one-process-per-message pipeline imports neither
the other commands nor the other parts' settings (measured: mailsift.config alone 35 ms), and
through the classify socket (run_quick) little beyond argparse. Heavy imports go inside run().
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from mailsift import __version__

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from typing import Any

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


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, sized as argparse sizes it ($COLUMNS, else the terminal,
    minus 2) without importing shutil (and bz2, lzma) for it: argparse makes one per argument."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            import os

            try:
                width = int(os.environ["COLUMNS"])
            except (KeyError, ValueError):
                try:
                    width = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
                except (AttributeError, ValueError, OSError):
                    width = 80
            width -= 2
        super().__init__(prog, indent_increment, max_help_position, width)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser; `only`: with that subcommand alone (a run of it)."""
    parser = argparse.ArgumentParser(
        prog="mailsift",
        description="Mail filtering and mail store for Postfix.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"mailsift {__version__}")
    # prog given: argparse would otherwise build a help formatter now (importing shutil)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", prog="mailsift")
    for name, module_name in COMMANDS.items():
        if only is not None and name != only:
            continue
        module = _load(module_name)
        if module is None:
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, formatter_class=_Formatter)
        p.add_argument("--config", metavar="FILE", help="TOML configuration file (default: none, built-in defaults)")
        p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default: config or INFO)")
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


class DefaultConfig:
    """The built-in defaults (no --config), each section made when a command first reads it:
    [classifier] from its own settings module, any other from mailsift.config's Config()."""

    def __init__(self) -> None:
        self._full: Any = None

    @property
    def classifier(self) -> Any:
        from mailsift.classifier.settings import ClassifierSettings

        return ClassifierSettings()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._full is None:
            from mailsift.config import Config

            self._full = Config()
        return getattr(self._full, name)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(command)
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
    config: Config
    level: str | None
    if args.config is None and getattr(args._module, "LIGHT_CONFIG", False):  # reads config.<section> only
        config = DefaultConfig()  # type: ignore[assignment]
        # No --log-level: logging is left unconfigured (importing it costs a one-message
        # `classify` ~5 ms): warnings and errors still reach stderr, as plain lines.
        level = args.log_level
    else:
        from mailsift.config import Config, ConfigError, load_config

        try:
            config = load_config(args.config)
        except ConfigError as exc:
            if not getattr(args._module, "CHECKS_CONFIG", False):  # check-config reports it itself
                print(f"mailsift: {exc}", file=sys.stderr)
                return 3
            config = Config()
        level = args.log_level or config.logging.level
    if level is not None:
        from mailsift.logsetup import setup_logging

        setup_logging(level)
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
