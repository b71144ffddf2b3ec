"""[feedback] settings: learning from users' Junk moves and from what they keep, the per-user
daily cap, and the feedback spool for `mailsift retrain`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """"2d", "36h", "90m", "45s", "1w" or a plain number of seconds -> seconds. Raises ValueError."""
    m = _DURATION_RE.match(text.lower())
    if m is None:
        raise ValueError(f"{text!r} is not a duration (a number with s, m, h, d or w: \"2d\", \"36h\")")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


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
    # Implicit feedback: mail read and kept in INBOX or a user folder for `confirm_after` is
    # learned as ham, mail left in Junk that long (or deleted from it unread) as spam. Users can
    # opt out (`mailsift user set USER --no-implicit-feedback`).
    implicit: bool = True
    # How long a message must stay where it was filed before it counts as confirmed. Two days:
    # long enough for someone who reads mail daily to have seen it and moved it if it was
    # misfiled, short enough that a new site's model learns its mail within the week.
    confirm_after: str = "2d"
    # Most judgements one user's actions may teach the site-wide model per UTC day (moves,
    # APPENDs and implicit confirmations together); the excess is deferred to later days, not
    # dropped. 0 = no cap.
    max_learn_per_user_day: int = 1000
    # Self-training: with each batch of judgements, the mail delivered since is learned with the
    # model's own pseudo-labels where it is sure (its character member only, bounded; the model's
    # self_train settings; docs/classifier.md). Not with [classifier] share.
    self_train: bool = True

    def validate(self) -> None:
        if not 0 <= self.save_interval <= 50:
            raise ValueError("save_interval must be between 0 and 50 seconds (the model must change within a minute)")
        if self.spool_max_messages < 0:
            raise ValueError("spool_max_messages must not be negative")
        try:
            seconds = parse_duration(self.confirm_after)
        except ValueError as exc:
            raise ValueError(f"confirm_after: {exc}") from None
        if not 3600 <= seconds <= 90 * 86400:
            raise ValueError(f"confirm_after must be between 1h and 90d (got {self.confirm_after!r}): "
                             "users need time to notice a misfiled message")
        if self.max_learn_per_user_day < 0:
            raise ValueError("max_learn_per_user_day must not be negative (0 = no cap)")

    def confirm_after_seconds(self) -> float:
        return parse_duration(self.confirm_after)

    def model_dir(self, classifier_dbpath: str) -> str:
        """The model directory this learner trains."""
        return self.dbpath or classifier_dbpath
