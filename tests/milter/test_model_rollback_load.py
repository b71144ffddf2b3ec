"""`mailsift model rollback` while a real `mailsift milter` is under load: every message still
gets its X-Spam-*/X-Virus-* headers (none tempfailed, none scored without a model), and the milter
ends on the rolled-back model."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.procs import wait_for
from milter_helpers import corpus_files
from milter_wire import MtaSide, message_commands, packet, parse_replies

pytestmark = [pytest.mark.integration]

TOTAL = 300  # at least; the sender goes on until both rollbacks are loaded
PER_CONNECTION = 25
N = 220


def learn(mailsift_bin: str, db: Path, label: str, files: list[Path]) -> None:
    proc = subprocess.run([mailsift_bin, "learn", f"--{label}", "--dbpath", str(db), *map(str, files)],
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def body_of(raw: bytes) -> bytes:
    m = re.search(rb"\r?\n\r?\n", raw)
    return (raw[m.end():] if m else b"").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def headers_for(n: int) -> list[tuple[str, str]]:
    return [("From", f"Sender {n} <sender{n}@outside.test>"), ("To", "user@example.test"),
            ("Subject", f"load message {n}"), ("Message-ID", f"<rollback-{n}@outside.test>")]


def scan(mta: MtaSide, protocol: int, n: int, body: bytes) -> tuple[bytes, dict[str, list[str]]]:
    mta.send(message_commands(headers_for(n), body, f"RB{n:04d}", protocol))
    added, _changed, final = parse_replies(mta.replies())
    mta.send(packet(b"A"))
    headers: dict[str, list[str]] = {}
    for name, value in added:
        headers.setdefault(name, []).append(value)
    return final, headers


def scan_one(socket_path: Path, n: int, body: bytes) -> tuple[bytes, dict[str, list[str]]]:
    mta = MtaSide(socket_path)
    try:
        result = scan(mta, mta.negotiate(), n, body)
        mta.send(packet(b"Q"))
        return result
    finally:
        mta.close()


def loads(log: str) -> int:
    return len(re.findall(r"model \S+ loaded \(load #\d+\)", log))


def test_rollback_under_load_fails_no_message(mailsift_bin, corpora, workdir, clamd, milter_factory) -> None:
    db = workdir / "models"
    ham = corpus_files(corpora, "spamassassin/easy_ham")
    learn(mailsift_bin, db, "spam", corpus_files(corpora, "spamassassin/spam_2")[:N])  # v1: spam only, not ready
    learn(mailsift_bin, db, "ham", ham[:N])                                             # v2
    learn(mailsift_bin, db, "ham", ham[N:N + 40])                                       # v3, live
    db.chmod(0o755)
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(db))
    probe_body = body_of(corpus_files(corpora, "spamassassin/easy_ham_2")[0].read_bytes())
    final, before = scan_one(milter.socket, 9999, probe_body)
    assert final == b"c" and before["X-Spam-Status"][0].startswith("No, "), before
    assert "MAILSIFT_UNSURE" not in before["X-Spam-Status"][0]

    files = corpus_files(corpora, "spamassassin/easy_ham_2")[1:151] + corpus_files(corpora, "spamassassin/spam")[:150]
    bodies = [body_of(p.read_bytes()) for p in files]
    results: list[tuple[int, bytes, dict[str, list[str]]]] = []
    errors: list[BaseException] = []

    stop = threading.Event()

    def send() -> None:
        n = 0
        try:
            while not (stop.is_set() and n >= TOTAL):
                mta = MtaSide(milter.socket)
                try:
                    protocol = mta.negotiate()
                    for _ in range(PER_CONNECTION):
                        results.append((n, *scan(mta, protocol, n, bodies[n % len(bodies)])))
                        n += 1
                    mta.send(packet(b"Q"))
                finally:
                    mta.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    loaded = loads(milter.log())
    sender = threading.Thread(target=send, name="mta")
    sender.start()
    try:
        rollbacks = []
        for _ in range(2):
            at = len(results) + 50
            wait_for(lambda: len(results) >= at or not sender.is_alive(), 120, what=f"{at} messages scanned")
            assert sender.is_alive(), errors
            started = len(results)
            proc = subprocess.run([mailsift_bin, "model", "rollback", "--dbpath", str(db)],
                                  capture_output=True, timeout=120)
            assert proc.returncode == 0, proc.stderr[-2000:]
            # the milter picks the new file up (its watcher polls every second)
            wait_for(lambda: loads(milter.log()) > loaded, 60, what="the milter reloading the model")
            loaded = loads(milter.log())
            rollbacks.append((started, len(results), proc.stdout.decode().strip()))
        at = len(results) + 50
        wait_for(lambda: len(results) >= at or not sender.is_alive(), 120, what="messages after the rollbacks")
    finally:
        stop.set()
        sender.join(300)
    assert not sender.is_alive(), "the sender did not finish"
    assert not errors, errors
    # messages were scanned while each rollback was written and loaded
    assert all(end > start for start, end, _ in rollbacks), rollbacks
    total = len(results)
    assert total >= TOTAL and [n for n, _f, _h in results] == list(range(total))
    bad = [(n, final, h) for n, final, h in results
           if final != b"c" or any(len(h.get(name, [])) != 1 for name in
                                   ("X-Spam-Status", "X-Spam-Score", "X-Spam-Level", "X-Virus-Status"))
           or h["X-Spam-Status"][0].startswith("Unknown")]
    assert bad == [], bad[:3]
    assert "action=tempfail" not in milter.log()

    # Two rollbacks from v3: v2, then v1 (spam only, not ready): the milter now says unsure
    # for the probe, as `mailsift classify` does with the same model directory.
    assert "rolled back to version 2-" in rollbacks[0][2] and "rolled back to version 1-" in rollbacks[1][2], rollbacks
    final, after = scan_one(milter.socket, 9998, probe_body)
    assert final == b"c" and "MAILSIFT_UNSURE" in after["X-Spam-Status"][0], after
    probe = workdir / "probe.eml"
    probe.write_bytes(b"".join(f"{k}: {v}\r\n".encode() for k, v in headers_for(9998)) + b"\r\n" + probe_body)
    proc = subprocess.run([mailsift_bin, "classify", "--dbpath", str(db), str(probe)], capture_output=True, timeout=60)
    _name, label, _p, score = proc.stdout.decode().strip().split("\t")
    assert label == "unsure" and after["X-Spam-Score"] == [score], (label, score, after)
    print(f"\nrollback under load: {total} messages, {[(a, b) for a, b, _ in rollbacks]} scanned during the "
          f"rollbacks, {loads(milter.log())} model loads, none failed")
