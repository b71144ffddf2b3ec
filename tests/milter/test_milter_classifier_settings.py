"""`mailsift milter` applies the [classifier] section's verdict settings (`unsure_points`,
`max_bytes`) as `mailsift classify` does, whether it scores in its own process or in scoring
workers. Spoken to directly over the milter protocol, with no clamd configured."""

from __future__ import annotations

from pathlib import Path

import pytest

from milter_wire import MtaSide, message_commands, packet, parse_replies

HEADERS = [
    ("From", "Sender <sender@outside.test>"),
    ("To", "user@example.test"),
    ("Subject", "minutes of the meeting"),
    ("Message-ID", "<settings-1@outside.test>"),
]
BODY = b"Hello,\r\n\r\nthe minutes of Tuesday's meeting are attached below.\r\n" * 20


NO_CLAMD = '[milter]\nclamd = ""\n'


def _config(workdir: Path, name: str, classifier: str) -> str:
    path = workdir / f"{name}.toml"
    path.write_text(NO_CLAMD + "[classifier]\n" + classifier)
    return str(path)


def _status(milter, queue_id: str) -> str:  # type: ignore[no-untyped-def]
    mta = MtaSide(milter.socket)
    try:
        protocol = mta.negotiate()
        mta.send(message_commands(HEADERS, BODY, queue_id, protocol))
        added, _changed, final = parse_replies(mta.replies())
        mta.send(packet(b"Q"))
    finally:
        mta.close()
    assert final == b"c", (added, final)
    return dict(added)["X-Spam-Status"]


@pytest.mark.parametrize("workers", ["0", "1"], ids=lambda w: f"score-workers-{w}")
def test_unsure_points_from_the_config_reach_the_verdict(milter_factory, trained_dbpath, workdir: Path,
                                                        workers: str) -> None:
    """A band of 0 points makes no verdict unsure; one of 30 points around `required` makes
    every verdict unsure (scores are clipped to [-10, 20]). Whatever the message scores, a
    milter keeping the model's own 1-point band fails one of the two."""
    statuses = {}
    for name, band in (("zero", "0.0"), ("wide", "30.0")):
        milter = milter_factory("--config", _config(workdir, name, f"unsure_points = {band}\n"),
                                "--dbpath", str(trained_dbpath), "--score-workers", workers, name=name)
        statuses[name] = _status(milter, name.upper())
        milter.stop()
    assert "MAILSIFT_UNSURE" not in statuses["zero"], statuses
    assert "MAILSIFT_UNSURE" in statuses["wide"], statuses


def test_max_bytes_from_the_config_marks_a_longer_message_partial(milter_factory, trained_dbpath,
                                                                  workdir: Path) -> None:
    """[classifier] max_bytes = 1024: the 1.3 KB message is scored on its first KB only, and the
    X-Spam-Status says so (MAILSIFT_PARTIAL_SCAN)."""
    milter = milter_factory("--config", _config(workdir, "small", "max_bytes = 1024\n"),
                            "--dbpath", str(trained_dbpath))
    assert len(BODY) > 1024
    status = _status(milter, "SMALL")
    assert "MAILSIFT_PARTIAL_SCAN" in status, status
