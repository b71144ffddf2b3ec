#!/usr/bin/env python3
"""Where the spam a cross-site `errors` run leaves in the inbox comes from (issue 12).

    .venv/bin/python bench/spam_left.py [--proto xs:cs>sa:errors ...] [--seed S] [--set KEY=VALUE ...]
        [--list N]

Runs bench/classifier_protocols.py's cross-site protocol (the same prior, stream, feedback and
seeding, so its summary line is that script's) with the model wrapped to record, for every
message scored, its parts: the words' part and the characters' part (each bounded, as fused),
the sender history's shift, the first-day guard and the threshold it raised, and what the
model had learned by then. Then, for each spam left in the inbox (scored ham or unsure):
whether it was unsure or ham-side, which folder it came from, where in the stream, whether the
guard was up and whether the score would have been filed to Junk without it, which part held
it back, how like the spam seen before it it was (Jaccard of the word-feature sets: the most
like an earlier corrected spam, and any earlier spam of the stream, filed or not), and what
kind of message it is (few words, HTML, images, attachments, little English). The same
"without the guard" count is given for ham, so the guard's two sides can be weighed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import classifier_protocols as cp  # noqa: E402  (bench/classifier_protocols.py)
from mailsift.classifier import evaluate  # noqa: E402
from mailsift.classifier.api import new_model  # noqa: E402
from mailsift.classifier.cmd_evaluate import parse_model_settings  # noqa: E402
from mailsift.classifier.corpus import Entry  # noqa: E402
from mailsift.classifier.model import SpamModel  # noqa: E402
from mailsift.classifier.points import bounded  # noqa: E402

ENGLISH = frozenset("the and you to of for your is in this that it with are on be we our have not".split())


@dataclass
class Seen:
    """What the wrapped model recorded when it scored one message of the stream."""

    i: int
    score: float
    required: float
    label: str
    words: float
    chars: float
    shift: float
    guard: float
    local: int
    held: int
    chars_learned: float
    feats: frozenset[int] = field(repr=False)
    names: list[str] = field(repr=False)


class Recorder:
    """The model, recording each verdict's parts (run_feedback calls spamminess, then verdict,
    once per message of the stream; self-training calls spamminess alone)."""

    def __init__(self, model: SpamModel) -> None:
        self.model = model
        self.seen: list[Seen] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def verdict(self, raw: bytes, required: float = 5.0) -> object:
        m = self.model
        v = m.verdict(raw, required=required)
        idx, names = m.features(raw)
        words = m._scored_words[1]  # noqa: SLF001
        b = m.settings.z_bound
        self.seen.append(Seen(len(self.seen) + 1, v.score, v.required, v.label, bounded(words, b),
                              bounded(m._char_z(raw), b), m.sender_shift(raw), m.guard(),  # noqa: SLF001
                              m.local_learned(), m.guard_held, float(m.chars.learned), frozenset(idx.tolist()), list(names)))
        return v

    def learn(self, raw: bytes, label: str) -> object:
        return self.model.learn(raw, label)

    def spamminess(self, raw: bytes) -> float:
        return self.model.spamminess(raw)


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / max(1, len(a | b))


def kind(s: Seen) -> list[str]:
    """The traits of a message, from its token names."""
    body = [n for n in s.names if ":" not in n and " " not in n]
    out = []
    if len(body) < 40:
        out.append("few words (<40)")
    if any(n.startswith("html:") for n in s.names):
        out.append("html")
    if "html:img" in s.names:
        out.append("img")
    if any(n.startswith("attach:") for n in s.names):
        out.append("attachment")
    if body and sum(n in ENGLISH for n in body) < 0.02 * len(body):
        out.append("little English (<2% stopwords)")
    if any(ord(c) > 127 for n in body for c in n):
        out.append("non-ASCII words")
    return out or ["plain"]


def analyse(proto: str, stream: list[Entry], seen: list[Seen], recs: list, listing: int) -> list[str]:
    out = [f"== {proto}: {len(stream)} messages"]
    taught = [evaluate.misfiled(r) for r in recs]
    spam_before: list[int] = []  # positions of earlier spam
    left = []
    for k, (e, s, r) in enumerate(zip(stream, seen, recs)):
        if e.label == "spam" and taught[k]:
            corrected = [j for j in spam_before if taught[j]]
            best_c = max(((jaccard(s.feats, seen[j].feats), j) for j in corrected), default=(0.0, -1))
            best_a = max(((jaccard(s.feats, seen[j].feats), j) for j in spam_before), default=(0.0, -1))
            left.append((k, e, s, best_c, best_a))
        if e.label == "spam":
            spam_before.append(k)
    n_spam = sum(e.label == "spam" for e in stream)
    out.append(f"spam left in the inbox: {len(left)} of {n_spam} ({100 * len(left) / n_spam:.2f}%)")
    c: Counter[str] = Counter()
    for k, e, s, (jc, _), (ja, _) in left:
        c["unsure" if s.label == "unsure" else "ham-side"] += 1
        c[f"folder {e.path.parent.name}"] += 1
        c[f"stream {2500 * (k // 2500) + 1}-{2500 * (k // 2500 + 1)}"] += 1
        c["guard up" if s.guard > 0 else "guard down"] += 1
        base = s.required - s.guard
        if s.guard > 0:
            c["guard up, would be Junk without it (score >= base + band)" if s.score >= base + 1 else
              "guard up, unsure without it" if s.score > base - 1 else "guard up, ham-side without it"] += 1
        c["sender history towards ham" if s.shift < 0 else "sender history towards spam" if s.shift > 0
          else "no sender history"] += 1
        c["words' part < 0" if s.words < 0 else "words' part >= 0"] += 1
        c["characters' part < 0" if s.chars < 0 else "characters' part >= 0"] += 1
        c["near-duplicate (J >= 0.5) of a corrected spam" if jc >= 0.5 else
          "like (0.3 <= J < 0.5) a corrected spam" if jc >= 0.3 else "unlike every corrected spam (J < 0.3)"] += 1
        c["near-duplicate (J >= 0.5) of an earlier spam" if ja >= 0.5 else
          "first of its kind (J < 0.3 to every earlier spam)" if ja < 0.3 else "like (0.3-0.5) an earlier spam"] += 1
        for t in kind(s):
            c[f"kind: {t}"] += 1
    for key in sorted(c):
        out.append(f"  {key:62s} {c[key]:5d}")
    # the same traits over all spam, for comparison
    allk: Counter[str] = Counter(t for e, s in zip(stream, seen) if e.label == "spam" for t in kind(s))
    out.append("  all spam's kinds: " + ", ".join(f"{k} {v} ({100 * v / n_spam:.0f}%)" for k, v in sorted(allk.items())))
    # the guard's two sides: what it held back that would have been right, and wrong
    up = [(e, s) for e, s in zip(stream, seen) if s.guard > 0]
    if up:
        last = max(s.i for _, s in up)
        base = lambda s: s.required - s.guard  # noqa: E731
        spam_freed = sum(e.label == "spam" and s.label != "spam" and s.score >= base(s) + 1 for e, s in up)
        ham_junked = sum(e.label == "ham" and s.label != "spam" and s.score >= base(s) + 1 for e, s in up)
        out.append(f"guard up for messages 1-{last} (of {len(stream)}; {seen[-1].local} taught by the end, "
                   f"guard at the end {seen[-1].guard:g}, {seen[-1].held} spam held back); without it "
                   f"(the same scores: first-order) "
                   f"{spam_freed} more spam filed, {ham_junked} more ham to Junk")
    out.append("  pos   folder     judge   score  req  guard  words  chars  sender taught  J(corr) J(any)  kind")
    for k, e, s, (jc, jcw), (ja, jaw) in left[:listing]:
        out.append(f"  {k + 1:5d} {e.path.parent.name[:9]:9s} {s.label:7s} {s.score:6.2f} {s.required:5.2f} "
                   f"{s.guard:5.2f} {s.words:6.2f} {s.chars:6.2f} {s.shift:6.2f} {s.local:5d}  "
                   f"{jc:.2f}@{jcw + 1:<5d} {ja:.2f}@{jaw + 1:<5d} {', '.join(kind(s))}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    ap.add_argument("--proto", action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", type=int, default=40, help="list the first N spam left")
    ap.add_argument("--dump", type=Path, metavar="PREFIX",
                    help="write every message's record to PREFIX-PROTO.tsv (for first-order replays)")
    args = ap.parse_args(argv)
    settings = parse_model_settings(args.settings)
    entries = cp.load_stream(None)
    print(f"settings: {settings or 'defaults'}; seed {args.seed}; {len(entries)} messages")
    for proto in args.proto or ["xs:cs>sa:errors", "xs:sa>cs:errors"]:
        kind_, _, rest = proto.partition(":")
        if kind_ != "xs":
            raise SystemExit("only the cross-site protocols")
        route, _, mode = rest.partition(":")
        src, _, dst = route.partition(">")
        model = new_model(**settings)
        for e in (e for e in entries if cp.CORPUS[src] in str(e.path)):
            model.learn(e.path.read_bytes(), e.label)
        model.mark_prior()
        if args.seed:
            model._replay_rng = np.random.default_rng(args.seed)  # noqa: SLF001
            model.chars.rng = np.random.default_rng(args.seed)
        stream = [e for e in entries if cp.CORPUS[dst] in str(e.path)]
        rec = Recorder(model)
        t = time.monotonic()
        recs = evaluate.run_feedback(stream, rec, evaluate.Feedback.parse(mode), seed=args.seed)  # type: ignore[arg-type]
        print(cp.summary(recs, proto, time.monotonic() - t), flush=True)
        print("\n".join(analyse(proto, stream, rec.seen, recs, args.list)), flush=True)
        if args.dump:
            name = proto.replace(":", "_").replace(">", "-")
            with open(f"{args.dump}-{name}.tsv", "w", encoding="utf-8") as f:
                f.write("pos\ttruth\tjudge\tscore\trequired\tguard\twords\tchars\tshift\ttaught\tfolder\n")
                for e, s in zip(stream, rec.seen):
                    f.write(f"{s.i}\t{e.label}\t{s.label}\t{s.score}\t{s.required}\t{s.guard}\t{s.words:.4f}\t"
                            f"{s.chars:.4f}\t{s.shift:.4f}\t{s.local}\t{e.path.parent.name}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
