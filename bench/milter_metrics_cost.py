"""What the Prometheus metrics cost `mailsift milter` per message, end to end.

Two milters run side by side on the same model (no clamd, log level WARNING): one with metrics
off (the default), one with `[metrics] milter` set and scraped over HTTP every `--scrape`
seconds while it works (Prometheus scrapes every 15 to 60 s; once a second is the harsh case).
This script speaks the MTA's side of the milter protocol (tests/milter/milter_wire.py), one
client, `--per-connection` messages per connection, and alternates between the two milters
round by round. It prints each milter process's CPU per message (/proc/PID/stat).

    .venv/bin/python bench/milter_metrics_cost.py [--messages 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "milter"))
sys.path.insert(0, str(ROOT / "tests"))

from harness.metrics import free_port, train_small_model  # noqa: E402
from harness.procs import Daemon, unix_ready, wait_for  # noqa: E402
from milter_connection_cost import bench_message  # noqa: E402
from milter_throughput import CORPORA, proc_snapshot, train_bench_model  # noqa: E402
from milter_wire import MtaSide, message_commands, packet  # noqa: E402

MAILSIFT = str(Path(sys.executable).parent / "mailsift")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-connection", type=int, default=10)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--scrape", type=float, default=1.0, help="seconds between scrapes of the metrics milter")
    args = ap.parse_args()
    wd = Path(tempfile.mkdtemp(prefix="mailsift-metricscost-"))
    if CORPORA.is_dir():
        train_bench_model(wd / "model")
        model = "250 + 250 corpus messages"
    else:
        train_small_model(wd / "model")
        model = "200 + 200 made-up messages (no corpora here)"
    port = free_port()
    milters: dict[str, tuple[Daemon, Path]] = {}
    for name, extra in (("off", ""), ("on", f'[metrics]\nmilter = "127.0.0.1:{port}"\n')):
        cfg = wd / f"{name}.toml"
        cfg.write_text('[milter]\nclamd = ""\non_scan_error = "accept"\n' + extra)
        sock = wd / f"{name}.sock"
        milters[name] = (Daemon([MAILSIFT, "milter", "--config", str(cfg), "--socket", f"unix:{sock}",
                                 "--dbpath", str(wd / "model"), "--log-level", "WARNING"],
                                wd / f"{name}.log").start(), sock)
    headers, body = bench_message(args.size)
    per = args.per_connection
    messages = args.messages // per * per
    stop = threading.Event()
    scrapes = [0]

    def scraper() -> None:
        while not stop.wait(args.scrape):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    resp.read()
                scrapes[0] += 1
            except OSError:
                pass

    def run(sock: Path) -> None:
        for _ in range(messages // per):
            mta = MtaSide(sock)
            try:
                protocol = mta.negotiate()
                for i in range(per):
                    mta.send(message_commands(headers, body, f"M{i}", protocol))
                    final = mta.replies()[-1][0]
                    if final not in (b"c", b"a"):
                        raise SystemExit(f"the milter answered {final!r}")
                    mta.send(packet(b"A"))
                mta.send(packet(b"Q"))
            finally:
                mta.close()

    try:
        for daemon, sock in milters.values():
            wait_for(lambda: unix_ready(sock), 60, what="mailsift milter")
            run(sock)  # warm-up
        threading.Thread(target=scraper, daemon=True).start()
        results: dict[str, list[float]] = {"off": [], "on": []}
        print(f"milter CPU per message, metrics off vs on (scraped every {args.scrape:g} s): {messages} messages "
              f"of {len(body)} body bytes per round, {per} per connection, model {model}")
        for r in range(args.rounds):
            for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                daemon, sock = milters[name]
                c0 = proc_snapshot()[daemon.pid][1]
                run(sock)
                us = (proc_snapshot()[daemon.pid][1] - c0) / messages * 1e6
                results[name].append(us)
                print(f"  round {r + 1}: metrics {name:>3}: {us:.0f} us/msg")
        off, on = statistics.median(results["off"]), statistics.median(results["on"])
        print(f"median: off {off:.0f} us/msg, on {on:.0f} us/msg ({(on - off) / off * 100:+.1f} %); "
              f"{scrapes[0]} scrapes")
    finally:
        stop.set()
        for daemon, _sock in milters.values():
            daemon.stop()


if __name__ == "__main__":
    main()
