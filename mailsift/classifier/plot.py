"""PNGs of evaluation runs: ROC curves and spam/ham score histograms.

`write_plot` draws one run (`mailsift evaluate --plot`); `write_comparison_plot` draws several
runs on the same messages (`mailsift retrain --report`: the live and the candidate model), their
ROC curves on one axes and a histogram panel per run, side by side.

matplotlib is imported inside the write functions (with the Agg backend: no display needed), so
importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from mailsift.classifier.metrics import Figures, Record, roc_points

if TYPE_CHECKING:
    from matplotlib.figure import Figure

COLOURS = ("tab:blue", "tab:orange", "tab:purple", "tab:brown")


@dataclass(frozen=True)
class Run:
    """One model's results on a set of messages, as a plot shows it."""

    name: str
    records: Sequence[Record]
    figures: Figures | None = None


def figures_label(figures: Figures) -> str:
    return (f"1-ROCA% {figures.roca_pct:.3f}   lam% {figures.lam_pct:.2f}\n"
            f"hm% {figures.hm_pct:.2f}   sm% {figures.sm_pct:.2f}   "
            f"sm%@hm%≤0.1 {figures.sm_at_hm01_pct:.1f}")


def _scores(records: Sequence[Record], truth: str) -> list[float]:
    return [r.score for r in records if r.truth == truth]


def _draw_roc(ax: Any, runs: Sequence[Run]) -> None:
    """ROC curves, TREC style: ham misclassified (log scale) against spam misclassified."""
    n_ham = max((len(_scores(run.records, "ham")) for run in runs), default=1)
    floor = 0.5 / max(n_ham, 1)  # where 0 is drawn on the log axis
    for colour, run in zip(COLOURS, runs):
        points = roc_points(_scores(run.records, "spam"), _scores(run.records, "ham"))
        xs = [max(100.0 * fpr, 100.0 * floor) for fpr, _ in points]
        ys = [100.0 * (1.0 - tpr) for _, tpr in points]
        label = run.name if run.figures is None else f"{run.name}\n{figures_label(run.figures)}"
        ax.plot(xs, ys, color=colour, linewidth=1.5, label=label)  # ties: straight segments
    ax.set_xscale("log")
    ax.set_xlim(100.0 * floor, 100.0)
    ax.set_ylim(-1.0, 101.0)
    ax.axvline(0.1, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("ham misclassified % (log)")
    ax.set_ylabel("spam misclassified %")
    ax.grid(True, which="both", alpha=0.3)


def _bins(runs: Sequence[Run]) -> list[float]:
    """50 bins over the scores of all runs, so their histograms compare."""
    scores = [r.score for run in runs for r in run.records]
    lo, hi = min(scores), max(scores)
    if hi <= lo:
        hi = lo + 1.0
    return [lo + (hi - lo) * i / 50 for i in range(51)]


def _draw_histograms(ax: Any, records: Sequence[Record], bins: list[float], title: str) -> None:
    ham, spam = _scores(records, "ham"), _scores(records, "spam")
    ax.hist(ham, bins=bins, alpha=0.6, color="tab:green", label=f"ham ({len(ham)})")
    ax.hist(spam, bins=bins, alpha=0.6, color="tab:red", label=f"spam ({len(spam)})")
    ax.set_yscale("log")
    ax.set_xlabel("spamminess")
    ax.set_ylabel("messages (log)")
    ax.legend()
    ax.set_title(title, fontsize=9)


def _new_figure(panels: int) -> tuple[Any, Figure, list[Any]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 5), dpi=100, squeeze=False)
    return plt, fig, list(axes[0])


def _save(fig: Figure, path: str | Path, title: str) -> None:
    """Write the PNG atomically (temp file, fsync, rename)."""
    from mailsift.classifier.persist import atomic_write

    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))


def write_plot(records: Sequence[Record], path: str | Path, figures: Figures | None = None,
               title: str = "mailsift") -> None:
    """One run: its ROC curve and its score histograms. Both classes must occur."""
    run = Run("ROC", records, figures)
    plt, fig, (ax_roc, ax_hist) = _new_figure(2)
    try:
        _draw_roc(ax_roc, [run])
        ax_roc.set_title(figures_label(figures) if figures is not None else "ROC", fontsize=9)
        _draw_histograms(ax_hist, records, _bins([run]), "score histograms")
        _save(fig, path, title)
    finally:
        plt.close(fig)


def write_comparison_plot(runs: Sequence[Run], path: str | Path, title: str = "mailsift") -> None:
    """Several runs on the same messages: their ROC curves on one axes (the legend gives each
    run's figures), then each run's score histograms, on one scale. Both classes must occur."""
    if not runs:
        raise ValueError("nothing to plot")
    plt, fig, axes = _new_figure(1 + len(runs))
    try:
        _draw_roc(axes[0], runs)
        axes[0].legend(fontsize=8, loc="upper right")
        axes[0].set_title("ROC", fontsize=9)
        bins = _bins(runs)
        for ax, run in zip(axes[1:], runs):
            _draw_histograms(ax, run.records, bins, f"{run.name}: score histograms")
        _save(fig, path, title)
    finally:
        plt.close(fig)
