"""[feedback] settings: learning from users' Junk moves, and the feedback spool for `mailsift retrain`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeedbackSettings:
    # Learn from what users move into and out of Junk (and $Junk/$NonJunk) while `mailsift serve` runs.
    enabled: bool = True
    # The model directory to train; empty = [classifier] dbpath (the model the milter uses).
    dbpath: str = ""
    # Seconds to gather changes before the model is learned and saved once (the milter reloads a
    # saved model within seconds, so users' corrections reach it well within a minute).
    save_interval: float = 5.0
    # Most messages kept in the feedback spool (DBPATH/feedback/) for `mailsift retrain`; the
    # oldest go first.
    spool_max_messages: int = 20000

    def validate(self) -> None:
        if not 0 <= self.save_interval <= 50:
            raise ValueError("save_interval must be between 0 and 50 seconds (the model must change within a minute)")
        if self.spool_max_messages < 0:
            raise ValueError("spool_max_messages must not be negative")

    def model_dir(self, classifier_dbpath: str) -> str:
        """The model directory this learner trains."""
        return self.dbpath or classifier_dbpath
