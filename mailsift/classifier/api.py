"""The classifier's public API: what the milter, `evaluate` and the commands call.

    model = new_model()                       # empty
    model.learn(raw, "spam"); model.unlearn(raw, "spam")
    model.spamminess(raw) -> float            # [0, 1], ranks even while unsure
    model.verdict(raw, required=5.0) -> Verdict   # never raises on bad input
    save_model(model, "models/"); load_model("models/")   # atomic; ModelError when bad

Importing this module imports numpy (not scikit-learn): command modules import it inside
run(). scorer.load_scorer scores from the model file without numpy (`mailsift classify`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from mailsift.classifier.model import MIN_LEARNED, ModelSettings, SpamModel, probability_to_score
from mailsift.classifier.persist import (
    MODEL_FILE,
    SIDECAR_FILE,
    ModelError,
    load_model,
    read_sidecar,
    save_model,
)

__all__ = [
    "MIN_LEARNED", "MODEL_FILE", "SIDECAR_FILE", "ModelError", "ModelSettings", "SpamModel",
    "load_model", "new_model", "probability_to_score", "read_sidecar", "save_model",
]


def new_model(**settings: Any) -> SpamModel:
    """An empty model; keyword arguments are ModelSettings fields (hash_bits, alpha, ...)."""
    known = {f.name for f in fields(ModelSettings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"unknown model setting(s): {', '.join(unknown)}")
    return SpamModel(ModelSettings(**settings))
