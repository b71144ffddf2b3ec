"""[classifier] settings."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClassifierSettings:
    # The model directory (`--dbpath`); relative paths are relative to the working directory.
    dbpath: str = "models"
    # SpamAssassin-style score at and above which a message is spam.
    required: float = 5.0

    def validate(self) -> None:
        if self.required <= 0:
            raise ValueError("required must be positive")
