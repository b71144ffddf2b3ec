"""`mailsift retrain --report DIR`: what one retrain run decided and why, for an administrator.

    write_report(report, "/var/lib/mailsift/reports/2026-12-07", dbpath)

writes into DIR (created if missing):
    retrain-report.txt            date, model directory, training set sizes, held-out size, the
                                  live and the candidate model's figures on the held-out feedback,
                                  the decision and why
    retrain-report.png            both models' ROC curves on one axes and their score histograms
                                  (only when the held-out feedback has both spam and ham)
    retrain-live.results          each model's scores of the held-out messages, `ID TRUTH SCORE
    retrain-candidate.results     JUDGE` (ID: the message digest): `mailsift evaluate --results FILE`
                                  reads them again
A file this run does not write (no live model, too little feedback) is removed, so a reused DIR
never shows an older run's. Each file is written atomically; the text last.
matplotlib is imported only to draw the PNG.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from mailsift.classifier.metrics import Figures, Record
from mailsift.feedback.retrain import MIN_HOLDOUT, RetrainReport

TEXT = "retrain-report.txt"
PNG = "retrain-report.png"
RESULTS = {"live": "retrain-live.results", "candidate": "retrain-candidate.results"}

_ROWS = (("1-ROCA%", lambda f: f"{f.roca_pct:.4f}"),
         ("hm%", lambda f: f"{f.hm_pct:.3f}"),
         ("sm%", lambda f: f"{f.sm_pct:.3f}"),
         ("sm% at hm%<=0.1", lambda f: f"{f.sm_at_hm01_pct:.3f}"),
         ("lam%", lambda f: f"{f.lam_pct:.3f}"),
         ("unsure", lambda f: f"{f.unsure_spam + f.unsure_ham}"))


def _write_atomic(path: Path, text: str) -> None:
    from mailsift.classifier.persist import atomic_write

    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def _figures(records: Sequence[Record]) -> Figures | None:
    from mailsift.classifier.metrics import figures

    try:
        return figures(records)
    except ValueError:  # one class only: no ROC
        return None


def report_text(report: RetrainReport, dbpath: str | Path, figs: dict[str, Figures | None],
                plot: str, now: datetime) -> str:
    trained_fb = report.feedback - report.held_out
    lines = ["mailsift retrain report",
             f"date             {now.strftime('%Y-%m-%d %H:%M:%S UTC')}",
             f"model dir        {dbpath}",
             f"training set     {report.folder_messages} folder messages"
             + (f" ({len(report.unreadable)} unreadable)" if report.unreadable else "")
             + f", {trained_fb} feedback messages; the candidate learned {report.new_ham} ham, "
               f"{report.new_spam} spam (held-out feedback included)"]
    if report.new is None:
        lines.append(f"held out         none: too little feedback to compare the models "
                     f"({report.held_out} of {report.feedback} messages, at least {MIN_HOLDOUT} needed)")
    else:
        lines.append(f"held out         {report.held_out} most recent feedback messages of {report.feedback} "
                     f"({report.new.n_spam} spam, {report.new.n_ham} ham)")
        lines.append(f"{'':16} {'live':>10} {'candidate':>10}")
        for name, fmt in _ROWS:
            cells = []
            for model in ("live", "candidate"):
                f = figs.get(model)
                cells.append(fmt(f) if f is not None else ("none" if model not in figs else "n/a"))
            lines.append(f"{name:16} {cells[0]:>10} {cells[1]:>10}")
        errors = [str(ev.errors) if ev is not None else "none" for ev in (report.live, report.new)]
        lines.append(f"{'errors':16} {errors[0]:>10} {errors[1]:>10}")
        if any(f is None for f in figs.values()):
            lines.append("                 n/a: the held-out feedback has only one class, figures need both")
        lines.append("results          " + ", ".join(RESULTS[m] for m in figs)
                     + "  (mailsift evaluate --results FILE)")
    lines.append(f"plot             {plot}")
    lines.append(f"decision         {report.decision}: {report.reason}")
    return "\n".join(lines) + "\n"


def write_report(report: RetrainReport, directory: str | Path, dbpath: str | Path,
                 now: datetime | None = None) -> list[Path]:
    """Write the report files; returns their paths. Raises OSError when DIR cannot be written."""
    from mailsift.classifier.evaluate import format_record

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    runs = {"live": report.live_records, "candidate": report.new_records}
    runs = {name: records for name, records in runs.items() if records}
    written: list[Path] = []
    for name, file in RESULTS.items():
        path = d / file
        if name in runs:
            _write_atomic(path, "".join(format_record(r) for r in runs[name]))
            written.append(path)
        else:
            path.unlink(missing_ok=True)
    figs = {name: _figures(records) for name, records in runs.items()}
    if figs and all(f is not None for f in figs.values()):
        from mailsift.classifier.plot import Run, write_comparison_plot

        write_comparison_plot([Run(name, runs[name], figs[name]) for name in runs], d / PNG,
                              title=f"mailsift retrain: {report.decision}")
        written.append(d / PNG)
        plot = PNG
    else:
        (d / PNG).unlink(missing_ok=True)
        plot = ("none: no held-out feedback to draw" if not runs
                else "none: the held-out feedback has only one class")
    _write_atomic(d / TEXT, report_text(report, dbpath, figs, plot, now or datetime.now(timezone.utc)))
    written.append(d / TEXT)
    return written
