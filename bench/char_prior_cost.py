#!/usr/bin/env python3
"""CPU per verdict of a default model's first day with the character prior and without, in one run.

    .venv/bin/python bench/char_prior_cost.py [--rounds 5] [--messages 600]

Trains one model on 300 ham + 300 spam of the shared corpora, marks it as the prior with the
character prior learned from those messages (as `make model` does), saves it twice (with the
prior, and with it taken out) and then, alternating the two in each round, measures the CPU of
`model.verdict(raw)` (the milter's call) and of the numpy-free scorer's `verdict` (what
`mailsift classify` runs) over other corpus messages, each a new bytes object (no cache).
While the first-day guard is up the prior adds a 4-gram pass over the first char_prior_bytes
bytes of the body; once it is down it is not computed (tests/classifier/test_char_prior.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CORPORA = ROOT.parent / "shared" / "corpora"

from mailsift.classifier.api import load_model, new_model, save_model  # noqa: E402
from mailsift.classifier.scorer import load_scorer  # noqa: E402


def files(folder: str, skip: int, count: int) -> list[bytes]:
    paths = sorted(p for p in (CORPORA / folder).iterdir() if p.is_file())[skip:skip + count]
    return [p.read_bytes() for p in paths]


def per_verdict(verdict: object, msgs: list[bytes]) -> float:
    copies = [bytes(bytearray(r)) for r in msgs]
    t = time.process_time()
    for c in copies:
        verdict(c)  # type: ignore[operator]
    return (time.process_time() - t) / len(copies) * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--messages", type=int, default=600)
    args = ap.parse_args(argv)
    ham, spam = files("spamassassin/easy_ham", 0, 300), files("spamassassin/spam_2", 0, 300)
    corpus = [m for h, s in zip(ham, spam) for m in ((h, "ham"), (s, "spam"))]
    test = (files("spamassassin/easy_ham_2", 0, args.messages // 4) + files("spamassassin/spam", 0, args.messages // 4)
            + files("csdmc2010/ham", 0, args.messages // 4) + files("csdmc2010/spam", 0, args.messages // 4))
    model = new_model()
    for raw, label in corpus:
        model.learn(raw, label)
    model.mark_prior(corpus)
    with tempfile.TemporaryDirectory() as tmp:
        save_model(model, Path(tmp) / "with")
        prior = model.char_prior
        model.char_prior = None
        save_model(model, Path(tmp) / "without")
        sides = {"with": load_model(Path(tmp) / "with"), "without": load_model(Path(tmp) / "without")}
        scorers = {k: load_scorer(Path(tmp) / k) for k in sides}
        size = {k: (Path(tmp) / k / "model.bin").stat().st_size for k in sides}
    assert prior is not None and sides["with"].char_prior_share() == 1.0 and sides["without"].char_prior_share() == 0.0
    print(f"model.bin: {size['with']} bytes with the prior, {size['without']} without; "
          f"{len(test)} messages a round, {args.rounds} rounds")
    res: dict[str, list[tuple[float, float]]] = {k: [] for k in sides}
    for r in range(args.rounds):
        for name in (list(sides) if r % 2 == 0 else list(reversed(sides))):
            m_us = per_verdict(sides[name].verdict, test)
            s_us = per_verdict(scorers[name].verdict, test)  # type: ignore[union-attr]
            res[name].append((m_us, s_us))
            print(f"round {r + 1} {name:<8} model.verdict {m_us:6.0f} us, scorer.verdict {s_us:6.0f} us", flush=True)
    print("medians (CPU per verdict):")
    for name, runs in res.items():
        print(f"  {name:<8} model.verdict {statistics.median(x for x, _ in runs):6.0f} us, "
              f"scorer.verdict {statistics.median(y for _, y in runs):6.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
