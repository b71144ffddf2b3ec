"""One TOML file for every daemon, a section per part, read once into frozen dataclasses.

    [logging]      level
    [classifier]   mailsift/classifier/settings.py
    [milter]       mailsift/milter/settings.py
    [store]        mailsift/store/settings.py
    [policy]       mailsift/policy/settings.py
    [feedback]     mailsift/feedback/settings.py  (learning from users' Junk moves)
    [metrics]      mailsift/ops/settings.py  (where each daemon serves Prometheus metrics)

With no file at all the defaults serve a single host. Command-line flags override the file:
`override(settings, key=value_or_None, ...)` replaces the fields whose flag was given.
Unknown sections or keys and values of the wrong type are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mailsift.classifier.settings import ClassifierSettings
from mailsift.feedback.settings import FeedbackSettings
from mailsift.milter.settings import MilterSettings
from mailsift.ops.settings import MetricsSettings
from mailsift.policy.settings import PolicySettings
from mailsift.store.settings import StoreSettings

T = TypeVar("T")


class ConfigError(Exception):
    """The configuration file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Config:
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    milter: MilterSettings = field(default_factory=MilterSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    policy: PolicySettings = field(default_factory=PolicySettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for alt in typing.get_args(hint):
            if alt is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check(value, alt, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        item = args[0] if args else Any
        return tuple(_check(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is Any:
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return build_section(hint, value, where)
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def build_section(cls: type[T], data: dict[str, Any], name: str) -> T:
    """Validate one TOML table against a settings dataclass and build it."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"[{name}]: unknown setting(s) {', '.join(unknown)}")
    values = {key: _check(value, hints[key], f"[{name}] {key}") for key, value in data.items()}
    obj = cls(**values)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(f"[{name}]: {exc}") from None
    return obj


def parse_config(data: dict[str, Any]) -> Config:
    sections = {f.name: f for f in dataclasses.fields(Config)}
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ConfigError(f"unknown section(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(Config)
    built = {}
    for key, value in data.items():
        if not isinstance(value, dict):
            raise ConfigError(f"[{key}] must be a table")
        built[key] = build_section(hints[key], value, key)
    return Config(**built)


def load_config(path: str | Path | None) -> Config:
    """Read the TOML file at `path`; None means built-in defaults."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    return parse_config(data)


def override(settings: T, **flags: Any) -> T:
    """Replace the fields whose command-line flag was given (value not None)."""
    given = {k: v for k, v in flags.items() if v is not None}
    if not given:
        return settings
    return dataclasses.replace(settings, **given)  # type: ignore[type-var]
