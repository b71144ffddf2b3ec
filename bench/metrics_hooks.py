"""What the metrics hooks cost per event, in one process (no daemons).

    .venv/bin/python bench/metrics_hooks.py [--n 200000] [--repeat 5]

Times the milter's per-message hook (`metrics.milter_message`: two counters, the score and the
latency histograms, the virus counter) with metrics off (the default) and on, the store's
session/login hooks, and the IMAP worker's forwarding of an event to the main process
(a pickled frame on a socketpair, as mailsift/serve/workers.py sends it). Prints the best of
`--repeat` runs in microseconds per call.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailsift.ops import metrics  # noqa: E402
from mailsift.verdict import Verdict, VirusResult  # noqa: E402


def best(fn: Callable[[], None], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        times.append(time.perf_counter() - t0)
    return min(times) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    verdict = Verdict(probability=0.97, score=6.8, required=5.0).with_virus(VirusResult("clean"))

    def milter() -> None:
        metrics.milter_message(verdict, "accept", None, 0.0042)

    def store() -> None:
        metrics.session("imap")
        metrics.login("imap", True)

    off_milter = best(milter, args.n, args.repeat)
    off_store = best(store, args.n, args.repeat) / 2
    metrics.build_registry("milter")
    metrics.build_registry("store")
    on_milter = best(milter, args.n, args.repeat)
    on_store = best(store, args.n, args.repeat) / 2

    a, b = socket.socketpair()
    a.setblocking(False)
    from mailsift.serve.workers import frame

    def drain() -> None:
        try:
            while b.recv(1 << 16):
                pass
        except BlockingIOError:
            pass
    b.setblocking(False)

    def send(event: tuple[object, ...]) -> None:
        try:
            a.send(frame(("metric", event)))
        except BlockingIOError:
            drain()
    metrics.forward_to(send)
    fwd = best(store, args.n // 10, args.repeat) / 2
    metrics.reset()
    print(f"milter hook per message: off {off_milter:.2f} us, on {on_milter:.2f} us")
    print(f"store hook per event:    off {off_store:.2f} us, on {on_store:.2f} us, "
          f"forwarded from an IMAP worker {fwd:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
