"""`mailsift policy` with [metrics] policy set: /metrics scraped over HTTP while requests flow."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.metrics import free_port, moved, scrape, value

pytestmark = pytest.mark.integration


def metrics_config(workdir: Path, port: int) -> str:
    path = workdir / "mailsift.toml"
    path.write_text(f'[metrics]\npolicy = "127.0.0.1:{port}"\n')
    return str(path)


def test_greylist_decisions_move_by_exactly_the_requests(start_policy, workdir: Path) -> None:
    port = free_port()
    policy = start_policy(config=metrics_config(workdir, port))
    before = scrape(port)
    assert value(before, "mailsift_build_info", version=value_label(before, "mailsift_build_info", "version"),
                 daemon="policy") == 1
    assert value(before, "process_resident_memory_bytes") > 1_000_000
    with policy.client() as c:
        for n in range(3):  # three new triplets: deferred
            assert c.ask(sender=f"s{n}@sender.test", instance=f"new.{n}").startswith("DEFER_IF_PERMIT")
        middle = scrape(port)
        policy.advance(400)  # past the 300 s delay: each retry passes, with an X-Greylist header
        for n in range(3):
            assert c.ask(sender=f"s{n}@sender.test", instance=f"retry.{n}").startswith("PREPEND")
        # a retried triplet that has passed is known from now on
        assert c.ask(sender="s0@sender.test", instance="again.0") == "DUNNO"
    after = scrape(port)
    assert moved(before, middle, "mailsift_greylist_decisions_total", reason="new", action="defer_if_permit") == 3
    assert moved(middle, after, "mailsift_greylist_decisions_total", reason="new", action="defer_if_permit") == 0
    assert moved(middle, after, "mailsift_greylist_decisions_total", reason="passed", action="prepend") == 3
    assert moved(middle, after, "mailsift_greylist_decisions_total", reason="known", action="dunno") == 1
    total = sum(v for (name, _l), v in after.items() if name == "mailsift_greylist_decisions_total")
    assert total == 7


def value_label(samples, name: str, label: str) -> str:
    for (n, labels), _v in samples.items():
        if n == name:
            return dict(labels)[label]
    raise AssertionError(f"{name} missing")


def test_non_loopback_metrics_address_is_refused(start_policy, workdir: Path) -> None:
    path = workdir / "remote.toml"
    path.write_text('[metrics]\npolicy = "0.0.0.0:9181"\n')
    with pytest.raises(RuntimeError, match="not a loopback address"):
        start_policy(config=str(path))


def test_a_taken_metrics_address_stops_the_daemon(start_policy, workdir: Path) -> None:
    """It exits (status 3) and says why, rather than run unwatched."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=r"(?s)status 3.*cannot listen"):
            start_policy(config=metrics_config(workdir, port))
