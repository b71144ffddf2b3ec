"""Which tokens a verdict's report names: one rule for the model (numpy) and the scorer (none).

Both give the same clues for the same message, ties included: candidates are compared by
their weight rounded to 4 decimals (as the report prints it), then by name, so the order of
equal weights never depends on how each path happened to sort (the classify socket and the
in-process scorer print byte-identical reports: tests/milter/test_classify_route.py).
"""

from __future__ import annotations

LIMIT = 5


def select_clues(cands: list[tuple[float, str]], limit: int = LIMIT) -> tuple[tuple[str, float], ...]:
    """`cands`: (rounded weight, name) pairs holding at least the `limit` lowest and highest
    weights with every tie at either cut-off. The `limit` strongest hammy and spammy tokens,
    strongest first, as (name, weight); zero weights left out."""
    order = sorted(cands)
    picked = order if len(order) <= 2 * limit else order[:limit] + order[-limit:]
    out = [c for c in picked if c[0] != 0.0]
    out.sort(key=lambda c: (-abs(c[0]), c[1]))
    return tuple((name, w) for w, name in out)
