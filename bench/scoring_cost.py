#!/usr/bin/env python3
"""The classifier's CPU per message against an earlier revision of itself, in one run.

    .venv/bin/python bench/scoring_cost.py [--baseline REV] [--rounds 3] [--messages 600]

The milter scores every message in its own process, so the model's scoring cost is the
milter's to carry (docs/milter.md); `evaluate --online` must keep at least 700 msgs/s. This
script extracts REV's `mailsift/` package (`git archive`, default: the commit before the
issue-12 model changes) into a temporary directory and, alternating with this checkout, runs
the same worker in a fresh process for each: train a model on 300 ham + 300 spam of the
shared corpora (online, one message at a time), then

    verdict   CPU per `model.verdict(raw)` (what the milter calls), over other corpus
              messages and over the milter benchmark's 5 KB message, each a new bytes object
              (no feature cache);
    online    messages/s of score-then-learn (`evaluate --online`'s loop), CPU time.

It prints both sides per round, their medians and the ratios (this / baseline).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import io
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "corpora"
BASELINE = "3145613"  # main before issue 12's model changes

WORKER = r"""
import json, sys, time
from pathlib import Path
from mailsift.classifier.api import new_model

corpora, n = Path(sys.argv[1]), int(sys.argv[2])
def files(folder, skip, count):
    paths = sorted(p for p in (corpora / folder).iterdir() if p.is_file())[skip:skip + count]
    return [p.read_bytes() for p in paths]
train = [(r, "ham") for r in files("spamassassin/easy_ham", 0, 300)] + [(r, "spam") for r in files("spamassassin/spam_2", 0, 300)]
train = [x for pair in zip(train[:300], train[300:]) for x in pair]
test = files("spamassassin/easy_ham_2", 0, n // 2) + files("spamassassin/spam", 0, n // 2)
body = ("Dear friend, this is a line of ordinary words for the benchmark. " * 80)[:5000]
bench_msg = ("From: a@example.org\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n" + body).encode()
model = new_model()
t = time.process_time()
for raw, label in train:
    copy = bytes(bytearray(raw))
    model.spamminess(copy); model.verdict(copy); model.learn(copy, label)
online = len(train) / (time.process_time() - t)
def per(msgs, reps):
    copies = [bytes(bytearray(r)) for r in msgs for _ in range(reps)]
    t = time.process_time()
    for c in copies:
        model.verdict(c)
    return (time.process_time() - t) / len(copies) * 1e6
corpus_us = per(test, 1)
small_us = per([bench_msg], 400)
print(json.dumps({"online": online, "corpus_us": corpus_us, "bench_us": small_us}))
"""


def extract(rev: str, into: Path) -> None:
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "mailsift"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")


def run(pythonpath: Path, n: int) -> dict[str, float]:
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    p = subprocess.run([sys.executable, "-c", WORKER, str(CORPORA), str(n)], env=env, cwd=pythonpath,
                       capture_output=True, text=True, timeout=1800)
    if p.returncode != 0:
        raise SystemExit(f"worker failed in {pythonpath}:\n{p.stderr}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default=BASELINE, help=f"git revision to compare with (default {BASELINE})")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--messages", type=int, default=600, help="corpus messages scored per round")
    args = ap.parse_args(argv)
    if not CORPORA.is_dir():
        print(f"corpora not found at {CORPORA}", file=sys.stderr)
        return 2
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "mailsift"], capture_output=True,
                           text=True).stdout.strip()
    this = f"this checkout ({head}{'+changes' if dirty else ''})"
    with tempfile.TemporaryDirectory(prefix="scoring-baseline-") as tmp:
        extract(args.baseline, Path(tmp))
        sides: dict[str, list[dict[str, float]]] = {this: [], f"baseline {args.baseline}": []}
        paths = {this: ROOT, f"baseline {args.baseline}": Path(tmp)}
        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for name in order:
                res = run(paths[name], args.messages)
                sides[name].append(res)
                print(f"round {r + 1} {name:<34} verdict {res['corpus_us']:7.0f} us/corpus msg, "
                      f"{res['bench_us']:6.0f} us/5 KB msg; online {res['online']:5.0f} msgs/s", flush=True)
    med = {name: {k: statistics.median(x[k] for x in runs) for k in runs[0]} for name, runs in sides.items()}
    a, b = med[this], med[f"baseline {args.baseline}"]
    print("\nmedians (CPU time):")
    for name, m in med.items():
        print(f"  {name:<36} verdict {m['corpus_us']:7.0f} us/corpus msg, {m['bench_us']:6.0f} us/5 KB msg; "
              f"online {m['online']:5.0f} msgs/s")
    print(f"ratios this/baseline: verdict corpus {a['corpus_us'] / b['corpus_us']:.2f}, "
          f"5 KB {a['bench_us'] / b['bench_us']:.2f}, online rate {a['online'] / b['online']:.2f}")
    print(f"evaluate --online loop: {a['online']:.0f} msgs/s (target >= 700) "
          f"{'PASS' if a['online'] >= 700 else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
