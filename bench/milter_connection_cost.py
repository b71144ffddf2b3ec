"""Diagnostic: what one milter connection costs mailsift's milter, apart from its messages.

Postfix opens a milter connection per SMTP session, and smtp-source (bench/milter_throughput.py)
sends one message per session, so every message there pays for a connection too: libmilter's
thread start and exit, the negotiation and QUIT round trips, pymilter's per-connection
objects. This script speaks the MTA's side of the milter protocol itself
(tests/milter/milter_wire.py) to one `mailsift milter` (no clamd, a model trained on 250 + 250
corpus messages, log level WARNING) and sends the same 5 KB message N times, alternately one
message per connection and 100 messages per connection, one client, sequentially. It prints the
milter process's CPU per message (/proc/PID/stat) for each; the difference is the cost of a
connection.

    .venv/bin/python bench/milter_connection_cost.py [--messages 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "milter"))

from milter_throughput import MAILSIFT, proc_snapshot, train_bench_model  # noqa: E402  (this directory)
from milter_wire import MtaSide, message_commands, packet  # noqa: E402
from harness.procs import Daemon, unix_ready, wait_for  # noqa: E402  (milter_throughput put tests/ on the path)

BODY_LINE = b"X" * 78


def bench_message(size: int) -> tuple[list[tuple[str, str]], bytes]:
    """smtp-source's shape: four headers and lines of 78 characters up to `size` bytes."""
    headers = [("From", "<a@outside.test>"), ("To", "<user@example.test>"),
               ("Date", "Sat, 5 Dec 2026 08:47:48 +0000"), ("Message-Id", "<bench.0001@vm>")]
    lines = [b"%d" % (i % 10) + BODY_LINE for i in range(max(1, size // 81))]
    return headers, b"\r\n".join(lines) + b"\r\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=5120)
    args = ap.parse_args()
    per_conn = 100
    messages = args.messages // per_conn * per_conn

    wd = Path(tempfile.mkdtemp(prefix="mailsift-conncost-"))
    train_bench_model(wd / "model")
    (wd / "milter.toml").write_text('[milter]\nclamd = ""\non_scan_error = "accept"\n')
    sock = wd / "milter.sock"
    daemon = Daemon([MAILSIFT, "milter", "--config", str(wd / "milter.toml"), "--socket", f"unix:{sock}",
                     "--dbpath", str(wd / "model"), "--log-level", "WARNING"], wd / "milter.log").start()
    headers, body = bench_message(args.size)

    def session(n: int) -> None:
        mta = MtaSide(sock)
        try:
            protocol = mta.negotiate()
            for i in range(n):
                mta.send(message_commands(headers, body, f"Q{i}", protocol))
                final = mta.replies()[-1][0]
                if final not in (b"c", b"a"):
                    raise SystemExit(f"the milter answered {final!r}, not continue/accept")
            mta.send(packet(b"Q"))
        finally:
            mta.close()

    def run(per_session: int) -> None:
        for _ in range(messages // per_session):
            session(per_session)

    try:
        wait_for(lambda: unix_ready(sock), 60, what="mailsift milter")
        run(1)  # warm-up: imports, caches, the model loaded
        pid = daemon.pid
        results: dict[int, list[float]] = {1: [], per_conn: []}  # messages per connection -> us/msg
        print(f"milter connection cost: {messages} messages of {len(body)} body bytes, one client, "
              f"{args.rounds} rounds, the two modes alternating")
        for r in range(args.rounds):
            for per_session in (list(results) if r % 2 == 0 else list(results)[::-1]):
                c0, t0 = proc_snapshot()[pid][1], time.perf_counter()
                run(per_session)
                c1, t1 = proc_snapshot()[pid][1], time.perf_counter()
                us = (c1 - c0) / messages * 1e6
                results[per_session].append(us)
                print(f"  round {r + 1}: {per_session} message(s) per connection: milter CPU {us:.0f} us/msg, "
                      f"wall {(t1 - t0) / messages * 1e6:.0f} us/msg")
        one, many = (statistics.median(results[k]) for k in (1, per_conn))
        print(f"median milter CPU per message: {one:.0f} us (1 per connection), {many:.0f} us ({per_conn} per "
              f"connection); a connection costs ~{one - many:.0f} us")
    finally:
        daemon.stop()


if __name__ == "__main__":
    main()
