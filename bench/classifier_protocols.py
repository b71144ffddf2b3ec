#!/usr/bin/env python3
"""Tune the model under the protocols users live in, in one process (mailsift only).

    .venv/bin/python bench/classifier_protocols.py [--set KEY=VALUE ...] [--proto P ...]
        [--label-noise P] [--index INDEX] [--seed S] [--self-train-every N]

Each --proto is one of
    full:all                     TREC immediate full feedback over the whole stream, empty model
    rev:all                      the same over the stream in reverse order (the drift the other way)
    implicit:all                 implicit:1000 feedback over the whole stream, empty model
    xs:SRC>DST:MODE              cross-site: train on corpus SRC (sa | cs), mark it as the prior
                                 (as `make model` does), stream corpus DST with feedback MODE
                                 (none | errors | implicit:N | full)
    long:twice:F                 a longer, noisier stream, full feedback, empty model: the stream in
                                 Date order, then all of it again in an order shuffled by --seed,
                                 a share F of the second pass (e.g. 0.03) with the other label, in
                                 the record and in what is learned (the same newsletter labelled
                                 ham by one recipient and spam by another)
    long:sa+cs, long:cs+sa       a new site's drift, full feedback, empty model: one corpus's
                                 Date-ordered stream, then the other's
(default: all of the above that docs/classifier.md's table reports). --prior-edit changes the
prior after mark_prior, to measure ideas that were tried and dropped (docs/classifier.md):
    lr-agree          word-LR weights whose sign disagrees with the token's NB log-ratio zeroed
    lr-dfmax:F        word-LR weights of tokens in more than a share F of the corpora's messages zeroed
    pseudo:C          C added to both classes' counts of every token the corpora taught
    body-only         NB counts and word-LR weights of every `prefix:` token (headers, Received,
                      URLs, HTML, MIME) zeroed: a prior of body words and bigrams only
    body-only-nb      the same for the NB counts only The stream is the shared
corpora deduplicated and ordered by Date (corpora/build_index.py), split by corpus for the
cross-site runs. One line per protocol: 1-ROCA%, sm% at hm% <= 0.1, and what users saw over
the whole stream and its first 2,500 messages; for `none`, ham filed to Junk and spam caught
at several thresholds (the first-day guard's operating point); for `long:`, 1-ROCA% over
growing prefixes, the messages scored beyond 1 - 1e-7 against their label, and with
--reference the same for the issue's reference (a plain SGD logistic regression over hashed
binary character 4-grams of the first 3,000 bytes, 2^20 columns, l2-normalised, log loss,
alpha 1e-6, learned in mini-batches of 50), the first prefix where mailsift is behind it.
--write-index FILE writes the last long stream as an index, for bench/classifier_vs_bogofilter.py
--index FILE (bogofilter on the same stream). docs/classifier.md's table of
measured choices comes from this script with the --set shown there;
bench/classifier_vs_bogofilter.py runs the same protocols against bogofilter.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "corpora"))

from mailsift.classifier import evaluate, metrics  # noqa: E402
from mailsift.classifier.api import new_model  # noqa: E402
from mailsift.classifier.cmd_evaluate import parse_model_settings  # noqa: E402
from mailsift.classifier.chargrams import char_indices  # noqa: E402
from mailsift.classifier.corpus import Entry, StreamStats, read_index, write_index  # noqa: E402
from mailsift.classifier.model import SpamModel, probability_to_score  # noqa: E402

DEFAULT = ["full:all", "implicit:all", "xs:sa>cs:none", "xs:cs>sa:none", "xs:sa>cs:errors", "xs:cs>sa:errors"]
CORPUS = {"sa": "spamassassin", "cs": "csdmc"}


def load_stream(index: Path | None) -> list[Entry]:
    if index is not None:
        return read_index(index)
    import build_index  # corpora/build_index.py

    return build_index.shared_stream(stats=StreamStats())


def summary(recs: list[metrics.Record], label: str, seconds: float) -> str:
    f = metrics.figures(recs)
    ws = metrics.windows(recs, 2500)
    whole, first = ws[-1], ws[0]

    def users(w: metrics.Window) -> str:
        return (f"h>J {100 * w.ham_to_junk / max(w.n_ham, 1):.2f} s>I {100 * w.spam_to_inbox / max(w.n_spam, 1):.2f} "
                f"uns {100 * w.unsure / max(w.n_ham + w.n_spam, 1):.2f}")
    return (f"{label:22s} 1-ROCA% {f.roca_pct:.4f} sm%@hm%<=0.1 {f.sm_at_hm01_pct:5.1f} | all: {users(whole)} "
            f"| first 2500: {users(first)} | {len(recs) / seconds:.0f} msgs/s")


def long_stream(entries: list[Entry], spec: str, seed: int) -> tuple[list[Entry], set[int]]:
    """The `long:` protocols' streams (see the module docstring), and the positions whose label
    was flipped."""
    kind, _, arg = spec.partition(":")
    if kind == "twice":
        share = float(arg or 0.03)
        rng = np.random.default_rng(seed)
        again = [entries[i] for i in rng.permutation(len(entries))]
        flip = set(rng.choice(len(again), size=round(share * len(again)), replace=False).tolist())
        other = {"ham": "spam", "spam": "ham"}
        second = [Entry(other[e.label], e.path) if i in flip else e for i, e in enumerate(again)]
        return entries + second, {len(entries) + i for i in flip}
    parts = kind.split("+")
    if len(parts) == 2 and all(p in CORPUS for p in parts):
        return [e for p in parts for e in entries if CORPUS[p] in str(e.path)], set()
    raise SystemExit(f"unknown long protocol {spec!r}")


class Reference:
    """The issue's reference learner: scikit-learn's SGD logistic regression over hashed binary
    character 4-grams of the first 3,000 raw bytes (2^20 columns), l2-normalised, log loss,
    alpha 1e-6, learned in mini-batches of 50 (scored before each batch is learned)."""

    BITS, BYTES, BATCH = 20, 3000, 50

    def __init__(self) -> None:
        from sklearn.linear_model import SGDClassifier

        self.sgd = SGDClassifier(loss="log_loss", alpha=1e-6, random_state=0)
        self.fitted = False
        self.batch: list[tuple[np.ndarray, int]] = []

    def _rows(self, cols: list[np.ndarray]) -> object:
        from scipy.sparse import csr_matrix

        indptr = np.cumsum([0] + [len(c) for c in cols])
        data = np.concatenate([np.full(len(c), 1.0 / max(1.0, np.sqrt(len(c)))) for c in cols])
        return csr_matrix((data, np.concatenate(cols).astype(np.int64), indptr), shape=(len(cols), 1 << self.BITS))

    def score(self, raw: bytes) -> float:
        """The decision function squashed gently: the ranking, without float ties at 1.0."""
        if not self.fitted:
            return 0.5
        z = float(self.sgd.decision_function(self._rows([char_indices(raw, self.BITS, self.BYTES)]))[0])
        return 1.0 / (1.0 + np.exp(-z / 50.0))

    def learn(self, raw: bytes, label: str) -> None:
        self.batch.append((char_indices(raw, self.BITS, self.BYTES), 1 if label == "spam" else 0))
        if len(self.batch) >= self.BATCH:
            x = self._rows([c for c, _ in self.batch])
            self.sgd.partial_fit(x, np.array([y for _, y in self.batch]), classes=np.array([0, 1]))
            self.fitted = True
            self.batch = []


def run_reference(stream: list[Entry]) -> list[metrics.Record]:
    ref, recs = Reference(), []
    for e in stream:
        raw = e.path.read_bytes()
        recs.append(metrics.Record(evaluate.result_id(e), e.label, ref.score(raw), "unknown"))
        ref.learn(raw, e.label)
    return recs


def roca(recs: list[metrics.Record]) -> float:
    return metrics.figures(recs).roca_pct


def long_report(recs: list[metrics.Record], ref: list[metrics.Record] | None, flipped: set[int],
                step: int = 2000) -> list[str]:
    """1-ROCA% over growing prefixes (and the reference's), and the surest wrong scores; with
    flipped labels, also 1-ROCA% without the flipped messages' own records (what a contrary
    label did to the scores of the others)."""
    ends = list(range(step, len(recs), step)) + [len(recs)]
    lines = ["    prefix " + " ".join(f"{n:>7d}" for n in ends),
             "    ours   " + " ".join(f"{roca(recs[:n]):7.4f}" for n in ends)]
    if ref is not None:
        lines.append("    ref    " + " ".join(f"{roca(ref[:n]):7.4f}" for n in ends))
        behind = [n for n in range(1000, len(recs) + 1, 500) if roca(recs[:n]) > roca(ref[:n])]
        lines.append(f"    behind the reference at prefixes: {behind[:6] or 'none'}{' ...' if len(behind) > 6 else ''}")
    half = len(recs) // 2
    sure = [r for r in recs if (r.score > 1 - 1e-7 if r.truth == "ham" else r.score < 1e-7)]
    lines.append(f"    halves: {roca(recs[:half]):.4f} / {roca(recs[half:]):.4f}; scored beyond 1-1e-7 against "
                 f"their label: {len(sure)} ({sum(r.truth == 'ham' for r in sure)} ham)")
    if flipped:
        rest = [r for i, r in enumerate(recs) if i not in flipped]
        line = f"    without the {len(flipped)} flipped: ours {roca(rest):.4f}"
        if ref is not None:
            line += f", ref {roca([r for i, r in enumerate(ref) if i not in flipped]):.4f}"
        lines.append(line)
    return lines


def edit_prior(model: SpamModel, edits: list[str], structural: set[int]) -> None:
    """The --prior-edit experiments, on a model just marked as the prior."""
    if not edits:
        return
    fc, a, n = model.feature_count, model.settings.alpha, model.n_features
    for edit in edits:
        name, _, arg = edit.partition(":")
        if name == "lr-agree":
            t = fc.sum(axis=1)
            nb = np.log(fc[1] + a) - np.log(fc[0] + a) - np.log(t[1] + a * n) + np.log(t[0] + a * n)
            model.lr_coef[np.sign(nb) != np.sign(model.lr_coef)] = 0.0
        elif name == "lr-dfmax":
            seen = model.class_count.sum() * model.settings.prior_weight  # counts were scaled
            model.lr_coef[fc.sum(axis=0) > float(arg) * seen] = 0.0
        elif name == "pseudo":
            fc[:, (fc[0] > 0) | (fc[1] > 0)] += float(arg)
        elif name in ("body-only", "body-only-nb"):
            idx = np.fromiter(structural, dtype=np.int64)
            fc[:, idx] = 0.0
            if name == "body-only":
                model.lr_coef[idx] = 0.0
        else:
            raise SystemExit(f"unknown --prior-edit {edit!r}")
    model.refresh()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    ap.add_argument("--proto", action="append", default=[])
    ap.add_argument("--label-noise", type=float, default=0.0)
    ap.add_argument("--self-train-every", type=int, default=0, metavar="N",
                    help="a self-training model (--set self_train=...) also learns what was scored "
                         "every N messages, not only before each message taught")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed the rehearsal's random generators with this before the stream (0: as a "
                         "model seeds them), and the flipped labels (--label-noise, long:twice); runs "
                         "with a few seeds show what is noise")
    ap.add_argument("--required", type=float, default=5.0)
    ap.add_argument("--index", type=Path)
    ap.add_argument("--prior-edit", action="append", default=[], metavar="EDIT")
    ap.add_argument("--reference", action="store_true",
                    help="with long: protocols, also run the issue's reference learner on the same stream")
    ap.add_argument("--write-index", type=Path, metavar="FILE", help="write the last long: stream as an index")
    args = ap.parse_args(argv)
    settings = parse_model_settings(args.settings)
    entries = load_stream(args.index)
    print(f"settings: {settings or 'defaults'}; prior edits: {args.prior_edit or 'none'}; "
          f"self-train every {args.self_train_every or 'taught message'}; seed {args.seed}; "
          f"label noise {args.label_noise:g}; {len(entries)} messages")
    for proto in args.proto or DEFAULT:
        kind, _, rest = proto.partition(":")
        model = new_model(**settings)
        if kind in ("full", "implicit", "errors"):
            stream = entries
            fb = evaluate.Feedback.parse("implicit:1000" if kind == "implicit" else kind)
        elif kind == "rev":
            stream, fb = entries[::-1], evaluate.Feedback("full")
        elif kind == "long":
            (stream, flipped), fb = long_stream(entries, rest, args.seed), evaluate.Feedback("full")
            if args.write_index:
                write_index(stream, args.write_index, absolute=True)
        elif kind == "xs":
            route, _, mode = rest.partition(":")
            src, _, dst = route.partition(">")
            stream = [e for e in entries if CORPUS[dst] in str(e.path)]
            structural: set[int] = set()
            body: set[int] = set()
            for e in (e for e in entries if CORPUS[src] in str(e.path)):
                raw = e.path.read_bytes()
                if any(x.startswith("body-only") for x in args.prior_edit):
                    idx, names = model.features(raw)
                    for i, name in zip(idx.tolist(), names):
                        (structural if ":" in name else body).add(i)
                model.learn(raw, e.label)
            model.mark_prior()
            edit_prior(model, args.prior_edit, structural - body)  # a column a body word shares is kept
            fb = evaluate.Feedback.parse(mode)
        else:
            raise SystemExit(f"unknown protocol {proto!r}")
        if args.seed:
            model._replay_rng = np.random.default_rng(args.seed)  # noqa: SLF001
            model.chars.rng = np.random.default_rng(args.seed)
        t = time.monotonic()
        recs = evaluate.run_feedback(stream, model, fb, required=args.required, label_noise=args.label_noise,
                                     seed=args.seed, self_train_every=args.self_train_every)
        print(summary(recs, proto, time.monotonic() - t), flush=True)
        if kind == "long":
            print("\n".join(long_report(recs, run_reference(stream) if args.reference else None, flipped)), flush=True)
        if proto.endswith(":none"):
            hams = [probability_to_score(r.score) for r in recs if r.truth == "ham"]
            spams = [probability_to_score(r.score) for r in recs if r.truth == "spam"]
            print("    " + "; ".join(
                f"required {req:g}: ham>Junk {100 * sum(h >= req for h in hams) / len(hams):.2f}% "
                f"spam caught {100 * sum(s >= req for s in spams) / len(spams):.1f}%" for req in (5, 7.5, 10, 12.5, 15)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
