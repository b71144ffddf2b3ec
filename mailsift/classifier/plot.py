"""A PNG of an evaluation run: the ROC curve and the spam/ham score histograms.

matplotlib is imported inside `write_plot` (with the Agg backend: no display needed), so
importing this module costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mailsift.classifier.metrics import Figures, Record, roc_points


def write_plot(records: Sequence[Record], path: str | Path, figures: Figures | None = None,
               title: str = "mailsift") -> None:
    """Write the PNG atomically (temp file, rename)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    spam = [r.score for r in records if r.truth == "spam"]
    ham = [r.score for r in records if r.truth == "ham"]
    fig, (ax_roc, ax_hist) = plt.subplots(1, 2, figsize=(12, 5), dpi=100)
    try:
        # ROC, TREC style: ham misclassified (log scale) against spam misclassified.
        points = roc_points(spam, ham)
        floor = 0.5 / max(len(ham), 1)  # where 0 is drawn on the log axis
        xs = [max(100.0 * fpr, 100.0 * floor) for fpr, _ in points]
        ys = [100.0 * (1.0 - tpr) for _, tpr in points]
        ax_roc.plot(xs, ys, color="tab:blue", linewidth=1.5)  # ties: straight segments
        ax_roc.set_xscale("log")
        ax_roc.set_xlim(100.0 * floor, 100.0)
        ax_roc.set_ylim(-1.0, 101.0)
        ax_roc.axvline(0.1, color="grey", linestyle=":", linewidth=1)
        ax_roc.set_xlabel("ham misclassified % (log)")
        ax_roc.set_ylabel("spam misclassified %")
        label = "ROC"
        if figures is not None:
            label = (f"1-ROCA% {figures.roca_pct:.3f}   lam% {figures.lam_pct:.2f}\n"
                     f"hm% {figures.hm_pct:.2f}   sm% {figures.sm_pct:.2f}   "
                     f"sm%@hm%≤0.1 {figures.sm_at_hm01_pct:.1f}")
        ax_roc.set_title(label, fontsize=9)
        ax_roc.grid(True, which="both", alpha=0.3)

        lo = min(spam + ham)
        hi = max(spam + ham)
        if hi <= lo:
            hi = lo + 1.0
        bins = [lo + (hi - lo) * i / 50 for i in range(51)]
        ax_hist.hist(ham, bins=bins, alpha=0.6, color="tab:green", label=f"ham ({len(ham)})")
        ax_hist.hist(spam, bins=bins, alpha=0.6, color="tab:red", label=f"spam ({len(spam)})")
        ax_hist.set_yscale("log")
        ax_hist.set_xlabel("spamminess")
        ax_hist.set_ylabel("messages (log)")
        ax_hist.legend()
        ax_hist.set_title("score histograms", fontsize=9)
        fig.suptitle(title)
        fig.tight_layout()
        path = Path(path)
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
