"""`mailsift retrain --report DIR` as a user runs it (a subprocess through the command line), on
a real feedback spool filled by the real feedback learner: the text's figures are those of the
results files it wrote, the PNG is a real image, the decision is what retrain did; too little
feedback says so; an unwritable DIR fails the report (exit 2), not the retrain."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from matplotlib.image import imread
from test_feedback_retrain import RUN, files_digest, folders, give_feedback, retrain  # noqa: F401 (fixture)

from mailsift.classifier.evaluate import read_results
from mailsift.classifier.metrics import figures
from mailsift.feedback.retrain_report import PNG, RESULTS, TEXT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Like RUN, and then fails when the run imported matplotlib.
RUN_WITHOUT_MATPLOTLIB = RUN.replace("sys.exit(cli.main())", "rc = cli.main(); "
                                     "assert 'matplotlib' not in sys.modules, 'matplotlib imported'; sys.exit(rc)")


def report_fields(text: str) -> dict[str, str]:
    """The report's lines by their label (the first 16 columns)."""
    return {line[:16].strip(): line[16:].strip() for line in text.splitlines() if line[:16].strip()}


def decision_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(("swapped:", "kept:", "dry-run:")))


def check_report(report: Path, stdout: str, dbpath: Path) -> dict[str, str]:
    """The text matches the results files and the decision printed; the PNG is a real image."""
    fields = report_fields((report / TEXT).read_text())
    assert fields["model dir"] == str(dbpath)
    assert fields["decision"] == decision_line(stdout)
    assert fields["results"].startswith(f"{RESULTS['live']}, {RESULTS['candidate']}")
    live = figures(read_results(report / RESULTS["live"]))
    cand = figures(read_results(report / RESULTS["candidate"]))
    assert (live.n_spam, live.n_ham) == (cand.n_spam, cand.n_ham) == (5, 5)
    assert fields["held out"] == "10 most recent feedback messages of 50 (5 spam, 5 ham)"
    for name, attr, text in (("1-ROCA%", "roca_pct", "{:.4f}"), ("hm%", "hm_pct", "{:.3f}"),
                             ("sm%", "sm_pct", "{:.3f}"), ("sm% at hm%<=0.1", "sm_at_hm01_pct", "{:.3f}"),
                             ("lam%", "lam_pct", "{:.3f}")):
        assert fields[name].split() == [text.format(getattr(live, attr)), text.format(getattr(cand, attr))], name
    # the errors are those retrain printed for each model
    lines = stdout.splitlines()
    printed = {m: next(line for line in lines if f"{m} model 1-ROCA%" in line).split("errors ")[1].split()[0]
               for m in ("live", "new")}
    assert fields["errors"].split() == [printed["live"], printed["new"]]
    png = (report / PNG).read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 20_000
    assert imread(report / PNG).shape[:2] == (500, 1800)  # ROC axes + two histogram panels, 6x5 in each
    assert fields["plot"] == PNG
    return fields


def test_report_of_a_swap(tmp_path: Path, store, inverted_model_template: Path,
                          folders: dict[str, Path], fresh_messages: dict[str, list[bytes]]) -> None:  # noqa: F811
    model = tmp_path / "model"
    shutil.copytree(inverted_model_template, model)          # a live model that has it backwards
    give_feedback(store, model, fresh_messages, 25)
    before = files_digest(model)
    report = tmp_path / "reports" / "2026-12-07"
    out = retrain("--dbpath", str(model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]),
                  "--report", str(report))
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    assert files_digest(model) != before and "swapped: the new model is not worse" in out.stdout
    fields = check_report(report, out.stdout, model)
    assert fields["decision"].startswith("swapped: ")
    assert fields["training set"].startswith("400 folder messages, 40 feedback messages; "
                                             "the candidate learned 225 ham, 225 spam")
    live = figures(read_results(report / RESULTS["live"]))
    cand = figures(read_results(report / RESULTS["candidate"]))
    assert live.roca_pct > cand.roca_pct  # the inverted live model ranks the held-out feedback backwards
    # `mailsift evaluate --results FILE` reads a results file again, with the same figures
    ev = subprocess.run([sys.executable, "-m", "mailsift", "evaluate", "--results", str(report / RESULTS["live"])],
                        capture_output=True, text=True, timeout=120)
    assert ev.returncode == 0, ev.stderr
    assert f"1-ROCA%         {live.roca_pct:.4f}" in ev.stdout


def test_report_when_the_live_model_stays(tmp_path: Path, store, good_model: Path,
                                          folders: dict[str, Path],
                                          fresh_messages: dict[str, list[bytes]]) -> None:  # noqa: F811
    give_feedback(store, good_model, fresh_messages, 25)
    before = files_digest(good_model)
    report = tmp_path / "report"
    # training folders with the labels swapped: the candidate is worse, the live model stays
    out = retrain("--dbpath", str(good_model), "--ham", str(folders["spam"]), "--spam", str(folders["ham"]),
                  "--report", str(report))
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    assert files_digest(good_model) == before
    fields = check_report(report, out.stdout, good_model)
    assert fields["decision"] == "kept: the new model is worse on the held-out feedback; the live model stays"


def test_report_of_too_little_feedback(tmp_path: Path, store, good_model: Path,
                                       folders: dict[str, Path],  # noqa: F811
                                       fresh_messages: dict[str, list[bytes]]) -> None:
    give_feedback(store, good_model, fresh_messages, 3)
    report = tmp_path / "report"
    report.mkdir()
    for stale in (PNG, *RESULTS.values()):  # an earlier run's files in a reused DIR
        (report / stale).write_text("stale")
    out = subprocess.run([sys.executable, "-c", RUN_WITHOUT_MATPLOTLIB, "retrain", "--dbpath", str(good_model),
                          "--ham", str(folders["ham"]), "--spam", str(folders["spam"]), "--report", str(report)],
                         capture_output=True, text=True, timeout=300)
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    fields = report_fields((report / TEXT).read_text())
    assert fields["held out"] == ("none: too little feedback to compare the models "
                                  "(0 of 6 messages, at least 10 needed)")
    assert fields["plot"] == "none: no held-out feedback to draw"
    assert fields["decision"] == decision_line(out.stdout) and fields["decision"].startswith("kept: too little")
    assert sorted(p.name for p in report.iterdir()) == [TEXT]


def test_unwritable_report_dir_fails_the_report_not_the_retrain(tmp_path: Path, store, good_model: Path,
                                                                folders: dict[str, Path],  # noqa: F811
                                                                fresh_messages: dict[str, list[bytes]]) -> None:
    give_feedback(store, good_model, fresh_messages, 3)
    before = files_digest(good_model)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the report's parent should be")
    out = retrain("--dbpath", str(good_model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]),
                  "--force", "--report", str(blocker / "report"))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert f"mailsift retrain: cannot write the report to {blocker / 'report'}" in out.stderr
    assert "(the retrain itself is done: swapped)" in out.stderr
    assert "swapped: forced" in out.stdout and files_digest(good_model) != before


def test_report_without_a_live_model(tmp_path: Path, store, good_model: Path,
                                     folders: dict[str, Path],  # noqa: F811
                                     fresh_messages: dict[str, list[bytes]]) -> None:
    give_feedback(store, good_model, fresh_messages, 25)
    for name in ("model.bin", "model.json"):  # the spool stays, the live model is gone
        (good_model / name).unlink()
    report = tmp_path / "report"
    out = retrain("--dbpath", str(good_model), "--ham", str(folders["ham"]), "--spam", str(folders["spam"]),
                  "--report", str(report))
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    fields = report_fields((report / TEXT).read_text())
    assert fields["decision"] == decision_line(out.stdout) == "swapped: there was no live model"
    cand = figures(read_results(report / RESULTS["candidate"]))
    assert fields["1-ROCA%"].split() == ["none", f"{cand.roca_pct:.4f}"]
    assert fields["errors"].split()[0] == "none"
    assert fields["results"].startswith(RESULTS["candidate"] + " ")
    assert not (report / RESULTS["live"]).exists()
    assert imread(report / PNG).shape[:2] == (500, 1200)  # ROC axes + the candidate's histograms
