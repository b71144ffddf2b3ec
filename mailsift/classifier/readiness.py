"""When a model decides, and how cautiously: one rule for the model (model.py) and the
numpy-free scorer (scorer.py), from the class counts (and, for the first-day guard, one count
the model file holds: `guard_held`).

A model is unsure until it has learned `ready_from` ham and `ready_from` spam (50 by
default). From there an empty one decides, with the site's `required` raised by
`guard_points` (the first-day guard's mechanism) shrinking in proportion as the smaller class
grows, to nothing once it holds MIN_LEARNED (200) of each. A model that started from public
corpora (the default model, `mark_prior`) decides under the first-day guard instead:
`required` raised until the site has taught `guard_until` messages of its own, and lowered
sooner by the spam the site taught that the guard alone had held back (`guard_relief`, a
point each), while the site teaches little ham (`guard_ham_cost` such spam per ham): under
errors-only feedback a taught message is a misfiled one, few are taught, and a guard counting
them alone stayed up whole streams.

Why 50 and a guard rather than 200 and none (issue 12; figures in docs/classifier.md): with
implicit feedback ham is learned only when the store confirms it, N messages late, so on a
30%-ham stream with implicit:1000 an empty model unsure until 200 ham decided only from about
message 2,440; from 50 under the guard it decides from about 1,770, filing no more ham to Junk.
"""

from __future__ import annotations

from mailsift.classifier.points import MIN_LEARNED

TYPE_CHECKING = False  # typing's, without importing typing: a one-message `classify` never needs it
if TYPE_CHECKING:
    from collections.abc import Sequence

READY_FROM = 50  # of each class: from here an empty model decides, cautiously


class Readiness:
    """Whether the model decides, the points its caution adds to `required`, and why (a note
    for the X-Spam-Report and `mailsift learn --dump`; None when the model is past both).
    A plain class, not a dataclass: a one-message `classify` imports no dataclasses."""

    __slots__ = ("ready", "guard", "note")

    def __init__(self, ready: bool, guard: float, note: str | None) -> None:
        self.ready = ready
        self.guard = guard
        self.note = note

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Readiness):
            return NotImplemented
        return (self.ready, self.guard, self.note) == (other.ready, other.guard, other.note)

    def __hash__(self) -> int:
        return hash((self.ready, self.guard, self.note))

    def __repr__(self) -> str:
        return f"Readiness(ready={self.ready}, guard={self.guard}, note={self.note!r})"


DECIDES = Readiness(True, 0.0, None)  # past both: the common case, built once


def assess(class_count: Sequence[float], prior_counts: Sequence[float], *, guard_points: float,
           guard_until: int, ready_from: int, held: float = 0.0, relief: float = 0.0,
           ham_cost: float = 0.0) -> Readiness:
    """The readiness of a model holding `class_count` (ham, spam) learned, of which
    `prior_counts` came from public corpora (mark_prior; zeros for a model without). On a
    default model's first day, `held` is the spam the site taught that the guard alone had kept
    out of Junk: each lowers the guard by `relief` points, less `ham_cost` of them for each ham
    the site taught (a ham taught under errors feedback is one filed to Junk despite the guard)."""
    ham, spam = int(round(class_count[0])), int(round(class_count[1]))
    least = ham if ham < spam else spam
    if least < ready_from:
        return Readiness(False, 0.0, f"learning: unsure until the model has learned {ready_from} ham and "
                                     f"{ready_from} spam ({ham} ham, {spam} spam so far)")
    if prior_counts[0] + prior_counts[1] > 0:
        return _prior(class_count, prior_counts, guard_points, guard_until, held, relief, ham_cost)
    if least >= MIN_LEARNED:
        return DECIDES
    left = 1.0 - least / MIN_LEARNED
    guard = round(guard_points * left, 2) if left > 0 else 0.0
    if not guard:
        return DECIDES
    return Readiness(True, guard, f"learning: required raised by {guard:g} until the model has learned "
                                  f"{MIN_LEARNED} ham and {MIN_LEARNED} spam ({ham} ham, {spam} spam so far)")


def _prior(class_count: Sequence[float], prior_counts: Sequence[float], guard_points: float,
           guard_until: int, held: float = 0.0, relief: float = 0.0, ham_cost: float = 0.0) -> Readiness:
    """A default model's first day: it decides from the first message, cautiously until the
    site has taught guard_until messages, or sooner as the spam it held back is corrected."""
    ham = max(0, int(round(class_count[0] - prior_counts[0])))
    learned = max(0, int(round((class_count[0] - prior_counts[0]) + (class_count[1] - prior_counts[1]))))
    left = 1.0 - learned / guard_until if guard_until > 0 else 0.0
    lowered = relief * max(0.0, held - ham_cost * ham) if relief > 0 else 0.0
    guard = round(max(0.0, guard_points * left - lowered), 2) if left > 0 else 0.0
    if not guard:
        return DECIDES
    why = f"; lowered by {lowered:g} for {int(held)} spam it held back" if lowered > 0 else ""
    return Readiness(True, guard, f"first day: required raised by {guard:g} until this site has taught "
                                  f"{guard_until} messages ({learned} so far{why})")
