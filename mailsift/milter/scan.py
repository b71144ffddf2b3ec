"""Raw message bytes -> Verdict with its virus result: clamd and the spam model, no milter.

`scan(scanner, raw, partial)` is the one way a message becomes a Verdict: the milter's
end-of-message, `mailsift classify -p` and the tests call it. It hands the message to clamd
first and scores it while clamd scans (MessageScanner.virus_async / PendingScan), so the
caller's thread rarely waits on clamd (docs/milter.md).

A message longer than max_scan_size (`partial`) is never called clean: clamd saw only its
start, so a clean answer becomes `Unscanned (message over max_scan_size) (partial scan)`; an
infected one stays infected.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, NamedTuple, Protocol

from mailsift.milter.reload import ModelHolder
from mailsift.scanner.clamav import ClamdClient, ScanError
from mailsift.verdict import Verdict, VirusResult

log = logging.getLogger("mailsift.milter.scan")

OVERSIZE_REASON = "message over max_scan_size"


class ScanOutcome(NamedTuple):  # (a NamedTuple: cheaper to make than a frozen dataclass, per message)
    verdict: Verdict
    scan_error: str | None = None  # clamd gave no answer (the verdict says Unscanned)
    score_ms: float = 0.0  # from handing the message to clamd until the score was ready
    clamd_ms: float = 0.0  # ... until clamd's answer was read too


class Models(Protocol):
    def current(self) -> tuple[Any, str | None]: ...


class Scanner(Protocol):
    """What the milter needs: MessageScanner here, PooledScanner (mailsift/milter/pool.py)."""

    def virus_async(self, raw: bytes, partial: bool) -> Callable[[], tuple[VirusResult | None, str | None]]: ...

    def score(self, raw: bytes, partial: bool) -> Verdict: ...


def no_model_verdict(reason: str, required: float) -> Verdict:
    return Verdict(probability=None, score=0.0, required=required, reason=reason)


def scan(scanner: Scanner, raw: bytes, partial: bool = False) -> ScanOutcome:
    """The Verdict for `raw` (at most max_scan_size bytes; `partial`: the message was longer),
    with its virus result. clamd scans while this thread scores: by the time the score is
    ready, clamd's answer usually is too."""
    t0 = time.monotonic()
    finish = scanner.virus_async(raw, partial)
    try:
        verdict = scanner.score(raw, partial)
    finally:
        t1 = time.monotonic()
        virus, error = finish()
    t2 = time.monotonic()
    return ScanOutcome(verdict.with_virus(virus), error, (t1 - t0) * 1000, (t2 - t0) * 1000)


class StaticModels:
    """A Models holder for one model already loaded (`mailsift classify`): no reloading."""

    def __init__(self, model: Any, reason: str | None = None) -> None:
        self._state = (model, reason)

    def current(self) -> tuple[Any, str | None]:
        return self._state


class MessageScanner:
    """Scans one message: `scan(raw, partial)` where `raw` is at most max_scan_size bytes and
    `partial` says the message was longer. clamd=None means no virus scanner is configured
    (the verdict says Unscanned); virus_scan=False leaves the virus side out altogether (no
    X-Virus-* headers: `mailsift classify -p` without --clamd). max_bytes and unsure_points
    override the model's own settings ([classifier] for `classify`)."""

    def __init__(self, clamd: ClamdClient | None, models: ModelHolder | Models, required: float = 5.0,
                 virus_scan: bool = True, max_bytes: int | None = None,
                 unsure_points: float | None = None) -> None:
        self.clamd = clamd
        self.models = models
        self.required = required
        self.virus_scan = virus_scan
        self.max_bytes = max_bytes
        self.unsure_points = unsure_points

    def score(self, raw: bytes, partial: bool) -> Verdict:
        model, reason = self.models.current()
        if model is None:
            verdict = no_model_verdict(reason or "no model", self.required)
        elif self.max_bytes is None and self.unsure_points is None:
            verdict = model.verdict(raw, required=self.required)
        else:  # the model applies the band around `required` as the first-day guard raised it
            verdict = model.verdict(raw, required=self.required, max_bytes=self.max_bytes,
                                    unsure_points=self.unsure_points)
        if partial and not verdict.partial:
            verdict = verdict.replace(partial=True)
        return verdict

    def virus(self, raw: bytes, partial: bool) -> tuple[VirusResult | None, str | None]:
        return self.virus_async(raw, partial)()

    def virus_async(self, raw: bytes, partial: bool) -> Callable[[], tuple[VirusResult | None, str | None]]:
        """Hand the message to clamd now; the returned callable gives (VirusResult, error) when
        called, so the caller can score the message while clamd scans it. Call it exactly once."""
        if not self.virus_scan:
            return lambda: (None, None)
        if self.clamd is None:
            done = (VirusResult("unscanned", reason="no virus scanner configured"), None)
            return lambda: done
        try:
            pending = self.clamd.start(raw)
        except ScanError as exc:
            failed = (VirusResult("unscanned", reason=exc.reason), str(exc))
            return lambda: failed

        def finish() -> tuple[VirusResult | None, str | None]:
            try:
                result = pending.result()
            except ScanError as exc:
                return VirusResult("unscanned", reason=exc.reason), str(exc)
            if partial:
                if result.state == "clean":  # clamd saw only the start: not a clean bill
                    result = VirusResult("unscanned", reason=OVERSIZE_REASON, scanner=result.scanner)
                result = result.replace(partial=True)
            return result, None
        return finish

    def scan(self, raw: bytes, partial: bool = False) -> ScanOutcome:
        return scan(self, raw, partial)
