"""`mailsift milter` with [metrics] milter set: /metrics scraped over HTTP while messages flow
through the milter (the milter protocol spoken as Postfix's cleanup speaks it)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from harness.clamd import EICAR
from harness.metrics import free_port, moved, scrape, train_small_model, value
from milter_wire import MtaSide, message_commands, packet, parse_replies

pytestmark = pytest.mark.integration

BODY = b"Hello,\r\n\r\nthe minutes of Tuesday's meeting are below.\r\n" * 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dbpath = tmp_path_factory.mktemp("metrics-model")
    train_small_model(dbpath)
    dbpath.chmod(0o755)
    return dbpath


def headers(n: str) -> list[tuple[str, str]]:
    return [("From", "Sender <sender@outside.test>"), ("To", "user@example.test"),
            ("Subject", f"metrics test {n}"), ("Message-ID", f"<metrics-{n}@outside.test>")]


def send(milter, bodies: list[bytes], tag: str) -> list[bytes]:
    """One connection, one message per body; the final reply code of each."""
    finals = []
    mta = MtaSide(milter.socket)
    try:
        protocol = mta.negotiate()
        for i, body in enumerate(bodies):
            mta.send(message_commands(headers(f"{tag}{i}"), body, f"{tag}{i}", protocol))
            finals.append(parse_replies(mta.replies())[2])
            mta.send(packet(b"A"))
    finally:
        mta.close()
    return finals


def config(workdir: Path, port: int, extra: str = "") -> str:
    path = workdir / "metrics.toml"
    path.write_text(f'[metrics]\nmilter = "127.0.0.1:{port}"\n{extra}')
    return str(path)


def total(samples, name: str) -> float:
    return sum(v for (n, _l), v in samples.items() if n == name)


def test_counters_move_by_exactly_the_messages_sent(milter_factory, clamd, model_dir, workdir) -> None:
    port = free_port()
    milter = milter_factory("--config", config(workdir, port), "--clamd", clamd.address,
                            "--dbpath", str(model_dir))
    before = scrape(port)
    finals = send(milter, [BODY] * 7, "clean")
    assert finals == [b"c"] * 7
    middle = scrape(port)
    assert moved(before, middle, "mailsift_milter_messages_total", action="accept") == 7
    assert total(middle, "mailsift_milter_verdicts_total") - total(before, "mailsift_milter_verdicts_total") == 7
    assert moved(before, middle, "mailsift_milter_virus_results_total", status="clean") == 7
    assert moved(before, middle, "mailsift_milter_score_count") == 7
    assert moved(before, middle, "mailsift_milter_scan_seconds_count") == 7
    assert moved(before, middle, "mailsift_milter_scan_seconds_bucket", le="+Inf") == 7
    assert moved(before, middle, "mailsift_milter_clamd_errors_total") == 0
    # the histogram's buckets are cumulative, and the score sum is a sum of real scores
    assert value(middle, "mailsift_milter_score_bucket", le="20.0") == value(middle, "mailsift_milter_score_count")

    infected = BODY + b"\r\n" + EICAR + b"\r\n"
    assert send(milter, [infected, BODY], "virus") == [b"c", b"c"]  # on_virus = tag
    after = scrape(port)
    assert moved(middle, after, "mailsift_milter_virus_results_total", status="infected") == 1
    assert moved(middle, after, "mailsift_milter_virus_results_total", status="clean") == 1
    assert moved(middle, after, "mailsift_milter_messages_total", action="accept") == 2

    # the model: what is on disk, and what the milter scores with
    assert value(after, "mailsift_model_present") == 1
    assert value(after, "mailsift_model_messages", label="ham") == 200
    assert value(after, "mailsift_model_messages", label="spam") == 200
    assert value(after, "mailsift_model_loaded_generation") == value(after, "mailsift_model_generation")
    assert 0 <= value(after, "mailsift_model_age_seconds") < 24 * 3600
    assert value(after, "process_resident_memory_bytes") > 10_000_000


def test_clamd_errors_and_tempfails_are_counted(milter_factory, clamd, model_dir, workdir) -> None:
    port = free_port()
    milter = milter_factory("--config", config(workdir, port), "--clamd", clamd.address,
                            "--dbpath", str(model_dir))
    before = scrape(port)
    clamd.stop()
    assert send(milter, [BODY] * 3, "down") == [b"y"] * 3  # on_scan_error = tempfail: a 451 reply
    after = scrape(port)
    assert moved(before, after, "mailsift_milter_clamd_errors_total") == 3
    assert moved(before, after, "mailsift_milter_messages_total", action="tempfail") == 3
    assert total(after, "mailsift_milter_verdicts_total") == total(before, "mailsift_milter_verdicts_total")


def test_skipped_messages_are_counted_apart(milter_factory, clamd, model_dir, workdir) -> None:
    """skip_networks covers the test's client (the milter protocol's connect says 127.0.0.1)."""
    port = free_port()
    cfg = config(workdir, port, '[milter]\nskip_networks = ["127.0.0.0/8"]\n')
    milter = milter_factory("--config", cfg, "--clamd", clamd.address, "--dbpath", str(model_dir))
    before = scrape(port)
    mta = MtaSide(milter.socket)
    try:
        protocol = mta.negotiate()
        mta.send(packet(b"C", b"client.test\0" + b"4" + struct.pack("!H", 25000) + b"127.0.0.1\0"))
        for i in range(2):
            envelope = packet(b"M", b"<sender@outside.test>\0")  # the milter asks for no RCPT
            mta.send(envelope + message_commands(headers(f"skip{i}"), BODY, f"skip{i}", protocol))
            assert parse_replies(mta.replies())[2] == b"a"  # accepted unscanned
            mta.send(packet(b"A"))
    finally:
        mta.close()
    after = scrape(port)
    assert moved(before, after, "mailsift_milter_skipped_total") == 2
    assert moved(before, after, "mailsift_milter_messages_total", action="accept") == 2
    assert moved(before, after, "mailsift_milter_scan_seconds_count") == 0


def test_score_workers_still_counted_in_the_milter(milter_factory, clamd, model_dir, workdir) -> None:
    """With score_workers the verdict comes back to the milter process, which counts it; the
    workers' memory shows as child processes."""
    port = free_port()
    milter = milter_factory("--config", config(workdir, port), "--clamd", clamd.address,
                            "--dbpath", str(model_dir), "--score-workers", "1")
    before = scrape(port)
    assert send(milter, [BODY] * 3, "pool") == [b"c"] * 3
    after = scrape(port)
    assert moved(before, after, "mailsift_milter_messages_total", action="accept") == 3
    assert total(after, "mailsift_milter_verdicts_total") - total(before, "mailsift_milter_verdicts_total") == 3
    assert moved(before, after, "mailsift_milter_score_count") == 3
    children = [v for (n, _l), v in after.items() if n == "mailsift_child_resident_memory_bytes"]
    assert children and all(v > 1_000_000 for v in children), children
    assert ("mailsift_model_generation", ()) in after and value(after, "mailsift_model_present") == 1
