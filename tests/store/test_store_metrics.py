"""`mailsift serve` with [metrics] store set: /metrics scraped over HTTP while mail is delivered
over LMTP, users log in over POP3 and IMAP (IMAP in worker processes, whose counts the main
process gathers) and a MOVE into Junk trains the model."""

from __future__ import annotations

import imaplib
import poplib

import pytest

from harness.metrics import free_port, moved, scrape, train_small_model, value
from harness.procs import tcp_ready, wait_for
from lmtp_wire import LMTPWire

pytestmark = pytest.mark.integration

USERS = {"alice@example.test": "pw-alice", "bob@example.test": "pw-bob"}


def message(n: int) -> bytes:
    return (f"From: sender@outside.test\r\nTo: alice@example.test\r\nSubject: metrics {n}\r\n"
            f"Message-ID: <store-metrics-{n}@outside.test>\r\n\r\nHello number {n}.\r\n").encode()


@pytest.fixture
def served(store_server):  # type: ignore[no-untyped-def]
    ports = {"metrics": free_port(), "pop3": free_port(), "imap": free_port()}
    srv = store_server(users=USERS, start=False, pop3=f"127.0.0.1:{ports['pop3']}",
                       imap=f"127.0.0.1:{ports['imap']}", imap_workers=2, max_message_size=100_000)
    train_small_model(srv.workdir / "model")
    with open(srv.config, "a") as fh:
        fh.write(f'[metrics]\nstore = "127.0.0.1:{ports["metrics"]}"\n[feedback]\nsave_interval = 0.2\n')
    srv.start()
    wait_for(lambda: tcp_ready("127.0.0.1", ports["metrics"]), 30, what="the metrics listener")
    # One probe connection to IMAP: a session a worker counts; wait until the main process has it.
    wait_for(lambda: tcp_ready("127.0.0.1", ports["imap"]), 30, what="the imap listener")
    wait_for(lambda: value(scrape(ports["metrics"]), "mailsift_sessions_total", protocol="imap") == 1,
             30, what="the probe's imap session to be counted")
    srv.ports = ports
    return srv


def total(samples, name: str) -> float:
    return sum(v for (n, _l), v in samples.items() if n == name)


def test_store_counters_move_by_exactly_what_was_done(served) -> None:
    port = served.ports["metrics"]
    before = scrape(port)
    lmtp = LMTPWire(served.lmtp_addr)  # one session, six transactions, seven deliveries
    try:
        assert lmtp.cmd("LHLO client.test").code == 250
        for n in range(3):
            assert [r.code for r in lmtp.transaction("sender@outside.test", ["alice@example.test"],
                                                     message(n))[1]] == [250]
        _rr, replies = lmtp.transaction("sender@outside.test", ["alice@example.test", "bob@example.test"],
                                        message(3))
        assert [r.code for r in replies] == [250, 250]
        rr, replies = lmtp.transaction("sender@outside.test", ["nobody@example.test"], message(4))
        assert [r.code for r in rr] == [550] and replies == []  # refused at RCPT: no delivery
        assert lmtp.cmd("RSET").code == 250
        _rr, replies = lmtp.transaction("sender@outside.test", ["alice@example.test", "bob@example.test"],
                                        message(5) + b"x" * 200_000 + b"\r\n")
        assert [r.code for r in replies] == [552, 552]  # too big: two refused deliveries
        assert lmtp.cmd("QUIT").code == 221
    finally:
        lmtp.close()
    after_lmtp = scrape(port)
    assert moved(before, after_lmtp, "mailsift_lmtp_deliveries_total", code="250") == 5
    assert moved(before, after_lmtp, "mailsift_lmtp_deliveries_total", code="552") == 2
    assert total(after_lmtp, "mailsift_lmtp_deliveries_total") - total(before, "mailsift_lmtp_deliveries_total") == 7
    assert moved(before, after_lmtp, "mailsift_sessions_total", protocol="lmtp") == 1

    pop = served.ports["pop3"]
    for password, ok in (("pw-alice", True), ("wrong", False)):
        client = poplib.POP3("127.0.0.1", pop, timeout=30)
        client.user("alice@example.test")
        if ok:
            client.pass_(password)
        else:
            with pytest.raises(poplib.error_proto):
                client.pass_(password)
        client.quit()

    imap_port = served.ports["imap"]
    for password in ("wrong", "also wrong"):
        imap = imaplib.IMAP4("127.0.0.1", imap_port)
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("bob@example.test", password)
        imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login("bob@example.test", "pw-bob")
    imap.logout()
    imap = imaplib.IMAP4("127.0.0.1", imap_port)
    imap.login("alice@example.test", "pw-alice")
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"  # the user calls message 0 spam
    imap.logout()

    def learned() -> object:
        now = scrape(port)
        # IMAP workers forward their events: they reach the main process a moment later
        done = (moved(before, now, "mailsift_learn_events_total", source="move into Junk", label="spam",
                      outcome="learned") >= 1 and moved(before, now, "mailsift_sessions_total", protocol="imap") >= 4)
        return now if done else None
    after = wait_for(learned, 30, what="the learn event of the MOVE")
    assert moved(before, after, "mailsift_logins_total", protocol="pop3", result="ok") == 1
    assert moved(before, after, "mailsift_logins_total", protocol="pop3", result="failed") == 1
    assert moved(before, after, "mailsift_sessions_total", protocol="pop3") == 2
    # counted in the two IMAP worker processes, gathered by the main process
    assert "IMAP in 2 worker processes" in served.log()
    assert moved(before, after, "mailsift_logins_total", protocol="imap", result="ok") == 2
    assert moved(before, after, "mailsift_logins_total", protocol="imap", result="failed") == 2
    assert moved(before, after, "mailsift_sessions_total", protocol="imap") == 4
    assert moved(before, after, "mailsift_learn_events_total", source="move into Junk", label="spam",
                 outcome="learned") == 1
    assert total(after, "mailsift_learn_events_total") - total(before, "mailsift_learn_events_total") == 1
    # the learner saved the model: one generation more, and the spam count with it
    assert value(after, "mailsift_model_generation") == value(before, "mailsift_model_generation") + 1
    assert moved(before, after, "mailsift_model_messages", label="spam") == 1
    # each process's resident memory: the main one, and the IMAP workers beside it
    assert value(after, "process_resident_memory_bytes") > 10_000_000
    workers = [v for (n, _l), v in after.items() if n == "mailsift_child_resident_memory_bytes"]
    assert len(workers) >= 2 and all(v > 1_000_000 for v in workers), workers


def test_a_judgement_that_cannot_be_learned_is_counted_as_such(served) -> None:
    """The model directory holds a corrupt model: the MOVE into Junk is kept for retrain and
    counted as not-learned."""
    from mailsift.classifier.api import MODEL_FILE

    port = served.ports["metrics"]
    model = served.workdir / "model" / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    lmtp = LMTPWire(served.lmtp_addr)
    try:
        assert lmtp.cmd("LHLO client.test").code == 250
        assert [r.code for r in lmtp.transaction("sender@outside.test", ["alice@example.test"], message(9))[1]] == [250]
    finally:
        lmtp.close()
    before = scrape(port)
    imap = imaplib.IMAP4("127.0.0.1", served.ports["imap"])
    imap.login("alice@example.test", "pw-alice")
    imap.select("INBOX")
    assert imap.uid("MOVE", "1", "Junk")[0] == "OK"
    imap.logout()
    after = wait_for(lambda: (lambda now: now if total(now, "mailsift_learn_events_total")
                              > total(before, "mailsift_learn_events_total") else None)(scrape(port)),
                     30, what="the learn event of the MOVE")
    assert moved(before, after, "mailsift_learn_events_total", source="move into Junk", label="spam",
                 outcome="not-learned") == 1
    assert total(after, "mailsift_learn_events_total") - total(before, "mailsift_learn_events_total") == 1
    assert value(after, "mailsift_model_present") == 1  # the sidecar is there; the model is refused
