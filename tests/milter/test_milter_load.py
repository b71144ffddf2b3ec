"""2,000 messages (smtp-source) through a relay Postfix into an MX Postfix + the milter while
clamd is killed and restarted and the milter is killed -9 and restarted mid-run. Afterwards
every message is delivered with a complete header set or still queued for retry: none lost,
none delivered without headers."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from harness.procs import wait_for
from milter_helpers import milter_main, relay_main

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 2000
REQUIRED_HEADERS = ("X-Spam-Status", "X-Spam-Score", "X-Spam-Level", "X-Virus-Scanned", "X-Virus-Status")
RELAY_ID = re.compile(rb"by relay\.mailsift\.test \(Postfix\) with E?SMTP id ([0-9A-F]+)")


def header_block(raw: bytes) -> bytes:
    end = raw.find(b"\n\n")
    return raw if end < 0 else raw[:end]


def relay_accepted_ids(log: str) -> set[str]:
    return set(re.findall(r"postfix/smtpd\[\d+\]: ([0-9A-F]+): client=", log))


def test_2000_messages_survive_clamd_and_milter_crashes(clamd, trained_dbpath, milter_factory, postfix_factory):
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath))
    mx = postfix_factory(main=milter_main(milter))
    relay = postfix_factory(main=relay_main(mx))
    t0 = time.monotonic()
    source = subprocess.Popen(["smtp-source", "-s", "20", "-l", "5120", "-m", str(TOTAL),
                               "-f", "sender@outside.test", "-t", "user@example.test",
                               f"{relay.host}:{relay.smtp_port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        new = mx.maildir / "new"
        count = lambda: sum(1 for _ in new.iterdir())  # noqa: E731

        # Fault 1: clamd dies; the milter answers 451 until it is back.
        wait_for(lambda: count() >= 300, 120, what="300 deliveries before the clamd fault")
        clamd.kill9()
        wait_for(lambda: milter.log().count("action=tempfail") >= 5, 60, what="tempfails while clamd is down")
        clamd.start()
        # Fault 2: the milter is killed -9 mid-run; Postfix's milter_default_action = tempfail.
        wait_for(lambda: count() >= 900, 120, what="900 deliveries before the milter fault")
        milter.kill9()
        n451 = relay.log_text().count(" 451 ")
        wait_for(lambda: relay.log_text().count(" 451 ") >= n451 + 5, 60, what="deferrals while the milter is down")
        milter.start()

        assert source.wait(120) == 0, source.stdout.read().decode(errors="replace")[-2000:]
        # Retries drain the relay's queue within a bounded time (backoff here is 1-2 s).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (relay.queue_ids() or count() < TOTAL):
            relay.flush()
            time.sleep(0.5)
    finally:
        if source.poll() is None:
            source.kill()
            source.wait()

    accepted = relay_accepted_ids(relay.log_text())
    assert len(accepted) == TOTAL, f"the relay accepted {len(accepted)} of {TOTAL}"
    delivered: dict[str, int] = {}
    incomplete = []
    for path in mx.delivered_paths():
        head = header_block(path.read_bytes().replace(b"\r\n", b"\n"))
        m = RELAY_ID.search(head)
        assert m, head[:500]
        rid = m.group(1).decode()
        delivered[rid] = delivered.get(rid, 0) + 1
        names = {line.split(b":", 1)[0].decode() for line in head.split(b"\n") if line and not line[:1].isspace()}
        missing = [h for h in REQUIRED_HEADERS if h not in names]
        if missing:
            incomplete.append((path.name, missing))
    queued = set(relay.queue_ids()) | set(mx.queue_ids())
    lost = accepted - set(delivered) - queued
    elapsed = time.monotonic() - t0
    print(f"\nload test: {len(delivered)} delivered, {len(queued)} still queued, {len(lost)} lost, "
          f"{sum(v - 1 for v in delivered.values())} duplicates, {len(incomplete)} without headers, "
          f"{milter.log().count('action=tempfail')} clamd tempfails, {elapsed:.1f}s")
    assert incomplete == [], incomplete[:5]
    assert not lost, sorted(lost)[:10]
    assert len(delivered) + len(queued - set(delivered)) == TOTAL
    # The faults really happened and were answered with 4xx, never 5xx.
    assert re.search(r"\b451\b", relay.log_text())
    assert not re.search(r"status=bounced", relay.log_text())
