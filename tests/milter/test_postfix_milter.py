"""The milter through a real Postfix and a real clamd: headers, viruses, forged verdicts, faults."""

from __future__ import annotations

import re
import smtplib
import time

import pytest

from harness.clamd import EICAR, TESTFILES
from harness.procs import wait_for
from milter_helpers import build_message, corpus_files, header_values, milter_main, parse, relay_main

pytestmark = pytest.mark.integration

RCPT = "user@example.test"
SENDER = "sender@outside.test"
STATUS_RE = re.compile(
    r"^(Yes|No), score=(-?\d+\.\d) required=5\.0 tests=(BAYES_\d+)(,MAILSIFT_UNSURE)?(,MAILSIFT_PARTIAL_SCAN)?"
    r" autolearn=no version=mailsift-\d+\.\d+$")


def by_test_id(raws: list[bytes]) -> dict[str, object]:
    out = {}
    for raw in raws:
        msg = parse(raw)
        out[str(msg["X-Test-Id"])] = msg
    return out


def with_test_id(raw: bytes, test_id: str) -> bytes:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return f"X-Test-Id: {test_id}\r\n".encode() + raw


def test_ham_and_spam_get_spamassassin_headers(clamd, trained_dbpath, milter_factory, postfix_factory, corpora):
    from mailsift.classifier.api import load_model

    model = load_model(trained_dbpath)
    picked: list[tuple[str, bytes, str]] = []
    for label, folder, start in (("ham", "spamassassin/easy_ham", 400), ("spam", "spamassassin/spam_2", 0)):
        n = 0
        for path in corpus_files(corpora, folder)[start:start + 60]:
            raw = with_test_id(path.read_bytes(), f"{label}-{n}")
            v = model.verdict(raw)
            # Only clear cases: the test checks the milter's plumbing, not the model's accuracy.
            if v.label == label and abs(v.score - 5.0) > 3.0:
                picked.append((label, raw, f"{label}-{n}"))
                n += 1
            if n == 3:
                break
        assert n == 3, f"the trained model finds no 3 clear {label} messages"

    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath))
    pf = postfix_factory(main=milter_main(milter))
    with smtplib.SMTP(pf.host, pf.smtp_port) as smtp:
        for _, raw, _ in picked:
            smtp.sendmail(SENDER, [RCPT], raw)
    delivered = by_test_id(pf.wait_delivered(len(picked)))
    for label, _, test_id in picked:
        msg = delivered[test_id]
        status = header_values(msg, "X-Spam-Status")
        assert len(status) == 1, msg.as_string()[:2000]
        m = STATUS_RE.match(" ".join(status[0].split()))
        assert m, status
        score = float(m.group(2))
        assert header_values(msg, "X-Spam-Score") == [m.group(2)]
        assert header_values(msg, "X-Spam-Level") == ["*" * max(0, int(score))] or (
            score < 1 and header_values(msg, "X-Spam-Level") in ([""], []))
        if label == "spam":
            assert m.group(1) == "Yes" and header_values(msg, "X-Spam-Flag") == ["YES"]
            assert score >= 5.0
        else:
            assert m.group(1) == "No" and header_values(msg, "X-Spam-Flag") == []
            assert score < 5.0
        report = header_values(msg, "X-Spam-Report")
        assert len(report) == 1 and ("spam:" in report[0] or "ham:" in report[0])
        assert header_values(msg, "X-Virus-Scanned") == ["mailsift 0.1 (clamd)"]
        assert header_values(msg, "X-Virus-Status") == ["Clean"]
    log = milter.log()
    assert "negotiation failed" not in log, log  # the macro lists were accepted (setsymlist)
    assert log.count("queue_id=") >= len(picked)
    assert re.search(r"queue_id=[0-9A-F]+ message_id=\S+ verdict=spam score=\d+\.\d virus=clean action=accept", log), log


def test_eicar_and_every_clamav_testfile_reported_infected(clamd, milter_factory, postfix_factory, workdir):
    files = sorted(p for p in TESTFILES.iterdir() if p.is_file())
    assert len(files) >= 40
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    sent: dict[str, str] = {}
    with smtplib.SMTP(pf.host, pf.smtp_port) as smtp:
        eicar = build_message("eicar", "EICAR attached", attachment=("eicar.com", EICAR))
        smtp.sendmail(SENDER, [RCPT], eicar)
        sent["eicar"] = "Eicar-Test-Signature"
        for i, path in enumerate(files):
            test_id = f"file-{i}"
            smtp.sendmail(SENDER, [RCPT], build_message(test_id, path.name, attachment=(path.name, path.read_bytes())))
            sent[test_id] = "ClamAV-Test-File"
    delivered = by_test_id(pf.wait_delivered(len(sent), timeout=120))
    assert set(delivered) == set(sent)
    for test_id, signature in sent.items():
        status = header_values(delivered[test_id], "X-Virus-Status")
        assert len(status) == 1 and status[0].startswith(f"Infected ({signature}"), (
            test_id, delivered[test_id]["Subject"], status)
        assert header_values(delivered[test_id], "X-Spam-Status")[0].startswith("Unknown")


def test_forged_verdict_headers_are_neutralised(clamd, trained_dbpath, milter_factory, postfix_factory):
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath))
    pf = postfix_factory(main=milter_main(milter))
    forged = (b"From: Friendly <friend@outside.test>\r\nTo: user@example.test\r\nSubject: cheap pills\r\n"
              b"X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100.0 required=5.0\r\n\tforged=yes\r\n"
              b"X-Virus-Status: Clean\r\nX-Test-Id: forged\r\nX-Spam-Level: \r\nx-spam-flag: NO\r\n"
              b"\r\nBuy now, viagra cialis, limited offer, click here http://pills.example/\r\n")
    pf.send(SENDER, [RCPT], forged)
    msg = parse(pf.wait_delivered(1)[0])
    # Our own verdict headers appear exactly once; the sender's kept their text under new names.
    assert len(header_values(msg, "X-Spam-Status")) == 1
    assert not header_values(msg, "X-Spam-Status")[0].startswith("No, score=-100")
    assert "NO" not in header_values(msg, "X-Spam-Flag")
    assert header_values(msg, "X-Virus-Status") == ["Clean"]
    assert sorted(header_values(msg, "X-Spam-Flag-Untrusted")) == ["NO", "NO"]
    untrusted_status = header_values(msg, "X-Spam-Status-Untrusted")
    assert len(untrusted_status) == 1 and "score=-100.0" in untrusted_status[0] and "forged=yes" in untrusted_status[0]
    assert header_values(msg, "X-Virus-Status-Untrusted") == ["Clean"]
    assert len(header_values(msg, "X-Spam-Level-Untrusted")) == 1
    assert b"Buy now, viagra" in msg.get_payload(decode=True)


def test_clamd_down_gives_451_and_the_message_arrives_scanned_after_retry(
        clamd, milter_factory, postfix_factory, workdir):
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(workdir / "nomodel"))
    mx = postfix_factory(main=milter_main(milter))
    # A relay in front of the MX queues the message and retries, as the sender's MTA would.
    relay = postfix_factory(main=relay_main(mx))
    clamd.stop()
    body = build_message("direct", "direct while clamd is down", text="hello\r\n")
    with pytest.raises(smtplib.SMTPDataError) as exc:
        mx.send(SENDER, [RCPT], body)
    assert exc.value.smtp_code == 451, exc.value
    assert mx.delivered() == []

    relay.send(SENDER, [RCPT], build_message("retried", "retried after clamd is back", text="hello again\r\n"))
    wait_for(lambda: "451" in relay.log_text() and relay.queue_ids(), 30, what="the relay to defer with 451")
    assert mx.delivered() == []
    clamd.start()
    relay.flush()
    msg = parse(mx.wait_delivered(1, timeout=60)[0])
    assert str(msg["X-Test-Id"]) == "retried"
    assert header_values(msg, "X-Virus-Status") == ["Clean"]
    assert header_values(msg, "X-Virus-Scanned") == ["mailsift 0.1 (clamd)"]
    wait_for(lambda: not relay.queue_ids(), 30, what="the relay's queue to drain")
    assert "action=tempfail" in milter.log() and "unreachable" in milter.log()


def test_on_scan_error_accept_tags_unscanned(milter_factory, postfix_factory, workdir):
    milter = milter_factory("--clamd", f"unix:{workdir / 'no-clamd.sock'}", "--on-scan-error", "accept",
                            "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    pf.send(SENDER, [RCPT], build_message("unscanned", "no clamd", text="hi\r\n"))
    msg = parse(pf.wait_delivered(1)[0])
    assert header_values(msg, "X-Virus-Status") == ["Unscanned (clamd unreachable)"]
    assert header_values(msg, "X-Spam-Status")[0].startswith('Unknown, reason="no model"')


def test_on_virus_reject_answers_554(clamd, milter_factory, postfix_factory, workdir):
    milter = milter_factory("--clamd", clamd.address, "--on-virus", "reject", "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    with pytest.raises(smtplib.SMTPDataError) as exc:
        pf.send(SENDER, [RCPT], build_message("eicar", "virus", attachment=("e.com", EICAR)))
    assert exc.value.smtp_code == 554 and b"Eicar-Test-Signature" in exc.value.smtp_error
    pf.send(SENDER, [RCPT], build_message("clean", "clean", text="clean text\r\n"))
    msgs = pf.wait_delivered(1)
    assert len(msgs) == 1 and str(parse(msgs[0])["X-Test-Id"]) == "clean"


def test_on_virus_hold_puts_it_in_the_hold_queue(clamd, milter_factory, postfix_factory, workdir):
    milter = milter_factory("--clamd", clamd.address, "--on-virus", "hold", "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    pf.send(SENDER, [RCPT], build_message("eicar", "virus", attachment=("e.com", EICAR)))
    held = wait_for(lambda: [q for q in pf.queue() if q.get("queue_name") == "hold"], 20, what="a held message")
    assert len(held) == 1
    assert pf.delivered() == []
    assert "action=hold" in milter.log()


def test_max_scan_size_scans_a_prefix_and_says_so(clamd, milter_factory, postfix_factory, workdir):
    config = workdir / "mailsift.toml"
    config.write_text("[milter]\nmax_scan_size = 4096\n")
    milter = milter_factory("--config", str(config), "--clamd", clamd.address, "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    filler = ("lorem ipsum dolor sit amet\r\n" * 400)
    pf.send(SENDER, [RCPT], build_message("big", "big", text=filler + EICAR.decode() + "\r\n"))
    pf.send(SENDER, [RCPT], build_message("small", "small", text=EICAR.decode() + "\r\n"))
    delivered = by_test_id(pf.wait_delivered(2))
    assert header_values(delivered["big"], "X-Virus-Status") == ["Unscanned (message over max_scan_size) (partial scan)"]
    assert header_values(delivered["small"], "X-Virus-Status")[0].startswith("Infected (Eicar-Test-Signature")
    assert " partial " in milter.log()


def test_no_model_tags_unknown_and_a_new_model_is_picked_up_without_dropping_the_connection(
        clamd, trained_dbpath, milter_factory, postfix_factory, workdir):
    from mailsift.classifier.api import load_model, save_model

    dbpath = workdir / "models"
    dbpath.mkdir()
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(dbpath))
    pf = postfix_factory(main=milter_main(milter))
    with smtplib.SMTP(pf.host, pf.smtp_port) as smtp:
        smtp.sendmail(SENDER, [RCPT], build_message("before", "before", text="hello\r\n"))
        first = parse(pf.wait_delivered(1)[0])
        assert header_values(first, "X-Spam-Status")[0].startswith('Unknown, reason="no model"')
        assert header_values(first, "X-Spam-Score") == []
        save_model(load_model(trained_dbpath), dbpath)  # atomic rename into the watched directory
        t0 = time.monotonic()
        wait_for(lambda: "model " in milter.log() and "loaded" in milter.log(), 10, what="the model reload")
        reload_s = time.monotonic() - t0
        smtp.sendmail(SENDER, [RCPT], build_message("after", "after", text="hello\r\n"))  # same SMTP session
    second = by_test_id(pf.wait_delivered(2))["after"]
    assert STATUS_RE.match(" ".join(header_values(second, "X-Spam-Status")[0].split()))
    assert len(header_values(second, "X-Spam-Score")) == 1
    assert reload_s < 5.0


def test_skip_networks_passes_listed_clients_unscanned(clamd, milter_factory, postfix_factory, workdir):
    config = workdir / "mailsift.toml"
    config.write_text('[milter]\nskip_networks = ["127.0.0.0/8"]\n')
    milter = milter_factory("--config", str(config), "--clamd", clamd.address, "--dbpath", str(workdir / "nomodel"))
    pf = postfix_factory(main=milter_main(milter))
    pf.send(SENDER, [RCPT], build_message("trusted", "from a trusted network", attachment=("e.com", EICAR)))
    msg = parse(pf.wait_delivered(1)[0])
    assert header_values(msg, "X-Virus-Status") == [] and header_values(msg, "X-Spam-Status") == []
    assert "verdict=skipped" in milter.log() and "skip_networks" in milter.log()


def test_milter_down_means_tempfail_not_accept(milter_factory, postfix_factory, workdir):
    milter = milter_factory("--clamd", "127.0.0.1:1", name="never-started", start=False)
    pf = postfix_factory(main=milter_main(milter))
    with pytest.raises(smtplib.SMTPResponseException) as exc:
        pf.send(SENDER, [RCPT], build_message("nomilter", "no milter", text="hi\r\n"))
    assert 400 <= exc.value.smtp_code < 500


def _descendants(pid: int) -> list[int]:
    import os
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def test_score_workers_score_in_other_processes_and_survive_a_killed_worker(
        clamd, trained_dbpath, milter_factory, postfix_factory):
    import os
    import signal

    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath), "--score-workers", "1")
    pf = postfix_factory(main=milter_main(milter))
    pf.send(SENDER, [RCPT], build_message("pooled-1", "pooled", text="hello\r\n"))
    first = parse(pf.wait_delivered(1)[0])
    assert len(header_values(first, "X-Spam-Score")) == 1
    descendants = _descendants(milter.daemon.pid)
    leaves = [p for p in descendants if not _descendants(p)]
    assert leaves, "no scoring worker process"
    for pid in leaves:
        os.kill(pid, signal.SIGKILL)
    # The message that meets the broken pool gets a 451 (the sender retries); later ones are scored.
    codes = []
    for attempt in range(5):
        try:
            pf.send(SENDER, [RCPT], build_message(f"pooled-2-{attempt}", "pooled again", text="hi\r\n"))
            break
        except smtplib.SMTPDataError as exc:
            codes.append(exc.smtp_code)
    assert all(c == 451 for c in codes) and len(codes) < 5, codes
    msgs = pf.wait_delivered(2)
    last = parse(msgs[-1])
    assert len(header_values(last, "X-Spam-Score")) == 1 and header_values(last, "X-Virus-Status") == ["Clean"]
    assert milter.daemon.alive()


def test_inet_socket_and_clamd_over_tcp(clamd, milter_factory, postfix_factory, workdir, mailsift_bin):
    from harness.procs import Daemon, free_port, tcp_ready

    port = free_port()
    d = Daemon([mailsift_bin, "milter", "--socket", f"inet:{port}@127.0.0.1", "--clamd", clamd.tcp,
                "--dbpath", str(workdir / "nomodel")], workdir / "inet-milter.log").start()
    try:
        wait_for(lambda: tcp_ready("127.0.0.1", port), 30, what="inet milter")

        class Spec:  # milter_main() only needs the Postfix name of the socket
            spec = f"inet:127.0.0.1:{port}"
        pf = postfix_factory(main=milter_main(Spec))  # type: ignore[arg-type]
        pf.send(SENDER, [RCPT], build_message("inet", "over tcp", attachment=("e.com", EICAR)))
        msg = parse(pf.wait_delivered(1)[0])
        assert header_values(msg, "X-Virus-Status")[0].startswith("Infected (Eicar-Test-Signature")
    finally:
        d.stop()
