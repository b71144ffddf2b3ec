"""The main process's share of the IMAP session mix's store events, without IMAP: CPU per event.

    PYTHONPATH=. .venv/bin/python bench/tracker_events.py [--cycles 20000] [--users 20] [--batch 2] [--rate 500] [--repeat 3]

Replays the events one cycle of bench/imap_load.py's `session` mix makes (STORE +FLAGS (\\Seen)
on an old message, APPEND, STORE +FLAGS.SILENT (\\Deleted) on it, EXPUNGE), for U users, through
what the main process of `mailsift serve` does with events an IMAP worker sends: decode the
tuples (serve/workers.py), publish them on the store's bus (store/events.py) to the feedback
learner, whose implicit tracker (feedback/implicit.py) records them in its state file
(feedback/state.py). Events arrive in frames of --batch events, as a worker's loop turn sends
them, --rate events per second (the session mix at about 1,300 commands/s makes 500). Prints the process CPU (all threads) per event and per cycle, until the learner is idle
(every event recorded). Run it on two trees (PYTHONPATH) to compare them."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rate", type=float, default=500.0,
                    help="events per second, in frames of --batch (0: as fast as they go)")
    args = ap.parse_args()

    from mailsift.feedback.learner import FeedbackLearner
    from mailsift.serve.workers import decode_events, encode_events
    from mailsift.store.api import Store
    from mailsift.store.events import Event

    users = [f"u{i}@example.test" for i in range(args.users)]
    results = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store(Path(tmp) / "mail")
            fl = FeedbackLearner(store, Path(tmp) / "model", confirm_after=2 * 86400.0,
                                 sweep_interval=3600.0).start()
            events: list[Event] = []
            next_uid = {u: 1000 for u in users}
            for c in range(args.cycles):
                u = users[c % len(users)]
                uid = next_uid[u]
                next_uid[u] += 1
                events += [
                    Event(u, "flags", "INBOX", None, 1, 1 + c % 200, frozenset({"\\Seen"}),
                          frozenset({"\\Seen"}), frozenset(), "store", modseq=c),
                    Event(u, "new", "INBOX", None, 1, uid, frozenset(), via="append", modseq=c),
                    Event(u, "flags", "INBOX", None, 1, uid, frozenset({"\\Deleted"}),
                          frozenset({"\\Deleted"}), frozenset(), "store", modseq=c),
                    Event(u, "expunge", "INBOX", None, 1, uid, via="expunge", modseq=c),
                ]
            frames = [encode_events(events[i:i + args.batch]) for i in range(0, len(events), args.batch)]
            # the state file exists once something was filed (as on a running server)
            store.events.publish_remote(decode_events(frames[0]))
            assert fl.wait_idle(60)
            t0, c0 = time.perf_counter(), time.process_time()
            step = args.batch / args.rate if args.rate else 0.0
            for i, rows in enumerate(frames[1:]):
                if step:  # the main process waits for the next frame in its event loop
                    pause = t0 + i * step - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                store.events.publish_remote(decode_events(rows))
            assert fl.wait_idle(600)
            cpu, wall = time.process_time() - c0, time.perf_counter() - t0
            n = len(events) - args.batch
            fl.stop()
            store.close()
            results.append(cpu / n * 1e6)
            print(f"{n} events: CPU {cpu:.2f} s ({cpu / n * 1e6:.1f} us per event, "
                  f"{cpu / n * 4e6:.1f} us per cycle), wall {wall:.2f} s", flush=True)
    print(f"median CPU per event: {statistics.median(results):.1f} us", flush=True)


if __name__ == "__main__":
    sys.exit(main())
