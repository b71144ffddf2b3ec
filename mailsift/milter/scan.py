"""Raw message bytes -> Verdict with its virus result: clamd and the spam model, no milter."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from mailsift.milter.reload import ModelHolder
from mailsift.scanner.clamav import ClamdClient, ScanError
from mailsift.verdict import Verdict, VirusResult

log = logging.getLogger("mailsift.milter.scan")


@dataclass(frozen=True)
class ScanOutcome:
    verdict: Verdict
    scan_error: str | None = None  # clamd gave no answer (the verdict says Unscanned)


class Scanner(Protocol):
    """What the milter needs: MessageScanner here, PooledScanner (mailsift/milter/pool.py)."""

    def virus_async(self, raw: bytes, partial: bool) -> Callable[[], tuple[VirusResult, str | None]]: ...

    def score(self, raw: bytes, partial: bool) -> Verdict: ...


def no_model_verdict(reason: str, required: float) -> Verdict:
    return Verdict(probability=None, score=0.0, required=required, reason=reason)


class MessageScanner:
    """Scans one message: `scan(raw, partial)` where `raw` is at most max_scan_size bytes and
    `partial` says the message was longer."""

    def __init__(self, clamd: ClamdClient | None, models: ModelHolder, required: float = 5.0) -> None:
        self.clamd = clamd
        self.models = models
        self.required = required

    def score(self, raw: bytes, partial: bool) -> Verdict:
        model, reason = self.models.current()
        if model is None:
            verdict = no_model_verdict(reason or "no model", self.required)
        else:
            verdict = model.verdict(raw, required=self.required)
        if partial and not verdict.partial:
            verdict = dataclasses.replace(verdict, partial=True)
        return verdict

    def virus(self, raw: bytes, partial: bool) -> tuple[VirusResult, str | None]:
        return self.virus_async(raw, partial)()

    def virus_async(self, raw: bytes, partial: bool) -> Callable[[], tuple[VirusResult, str | None]]:
        """Hand the message to clamd now; the returned callable gives (VirusResult, error) when
        called, so the caller can score the message while clamd scans it. Call it exactly once."""
        if self.clamd is None:
            done = (VirusResult("unscanned", reason="no virus scanner configured"), None)
            return lambda: done
        try:
            pending = self.clamd.start(raw)
        except ScanError as exc:
            failed = (VirusResult("unscanned", reason=exc.reason), str(exc))
            return lambda: failed

        def finish() -> tuple[VirusResult, str | None]:
            try:
                result = pending.result()
            except ScanError as exc:
                return VirusResult("unscanned", reason=exc.reason), str(exc)
            if partial:
                result = dataclasses.replace(result, partial=True)
            return result, None
        return finish

    def scan(self, raw: bytes, partial: bool = False) -> ScanOutcome:
        virus, error = self.virus(raw, partial)
        verdict = self.score(raw, partial).with_virus(virus)
        return ScanOutcome(verdict, error)
