"""The online and cross-validation protocols (with a stub model that checks the protocol's
rules) and `mailsift evaluate` as a user runs it, on real corpus messages."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from mailsift.classifier.corpus import Entry, build_stream, folder_entries, read_index, write_index
from mailsift.classifier.evaluate import (
    EvaluateError,
    folds,
    format_record,
    parse_results,
    read_results,
    run_cv,
    run_online,
)
from mailsift.classifier.metrics import Record, figures
from mailsift.verdict import Verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class StubModel:
    """Scores a message by the share of spam learned so far; refuses to score anything it
    has learned (a protocol that trains before classifying, or leaks a test fold, fails)."""

    def __init__(self) -> None:
        self.learned: dict[bytes, str] = {}
        self.calls: list[tuple[str, bytes]] = []

    def learn(self, raw: bytes, label: str) -> None:
        self.calls.append(("learn", raw))
        self.learned[raw] = label

    def spamminess(self, raw: bytes) -> float:
        assert raw not in self.learned, "scored a message the model had already learned"
        self.calls.append(("score", raw))
        n = len(self.learned)
        return (sum(1 for v in self.learned.values() if v == "spam") + 0.5) / (n + 1)

    def verdict(self, raw: bytes, required: float = 5.0) -> Verdict:
        p = self.spamminess(raw)
        return Verdict(p, 10.0 * p, required, unsure=len(self.learned) < 2)


def entries_of(tmp_path: Path, labels: str) -> list[Entry]:
    out = []
    for i, c in enumerate(labels):
        p = tmp_path / f"m{i}.eml"
        p.write_bytes(f"Subject: {i}\n\nmessage {i}\n".encode())
        out.append(Entry("spam" if c == "s" else "ham", p))
    return out


def test_online_classifies_before_it_learns(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, "sshhsh")
    model = StubModel()
    out = tmp_path / "results"
    with open(out, "w") as fh:
        records = run_online(entries, model, fh)
    # score, score (verdict), learn — per message, in order
    kinds = [k for k, _ in model.calls]
    assert kinds == ["score", "score", "learn"] * 6
    assert [r.id for r in records] == [f"m{i}.eml" for i in range(6)]
    assert records[0].score == 0.5 and records[0].judge == "unsure"
    assert records[2].score == pytest.approx(2.5 / 3)  # two spam learned before m2
    assert records[2].judge == "spam"
    assert read_results(out) == records


def test_cv_scores_each_message_once_with_a_model_that_never_saw_it(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, "s" * 7 + "h" * 13)
    models: list[StubModel] = []

    def factory() -> StubModel:
        models.append(StubModel())
        return models[-1]

    records = run_cv(entries, 4, factory, seed=3)
    assert len(models) == 4
    assert Counter(r.id for r in records) == Counter(e.id for e in entries)
    assert sum(len(m.learned) for m in models) == 3 * len(entries)  # k-1 folds each


def test_folds_are_stratified_and_seeded(tmp_path: Path) -> None:
    entries = entries_of(tmp_path, "s" * 10 + "h" * 30)
    parts = folds(entries, 5, seed=1)
    for p in parts:
        c = Counter(e.label for e in p)
        assert (c["spam"], c["ham"]) == (2, 6)
    assert folds(entries, 5, seed=1) == parts
    assert folds(entries, 5, seed=2) != parts
    with pytest.raises(ValueError, match="too few"):
        folds(entries[:3], 5)


def test_results_round_trip_and_bad_lines() -> None:
    r = Record("inmail.1", "spam", 0.9999999999999873, "unsure")
    assert parse_results(format_record(r)) == [r]  # full precision survives
    for line, msg in [
        ("a spam 0.5", "expected 'ID TRUTH SCORE JUDGE'"),
        ("a junk 0.5 spam", "truth must be spam or ham"),
        ("a ham zero spam", "score is not a number"),
        ("a ham nan spam", "score is NaN"),
        ("a ham 0.5 maybe", "judge must be one of"),
    ]:
        with pytest.raises(EvaluateError, match=f"res:2: {re.escape(msg)}"):
            parse_results("x ham 0.1 ham\n" + line + "\n", "res")


# --- as a user runs it ----------------------------------------------------------------------

def run_cli(mailsift_bin: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([mailsift_bin, "evaluate", *args], capture_output=True, text=True, timeout=timeout)


def printed(stdout: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)}\s+([0-9.]+)", stdout, re.M)
    assert m, f"{name} not printed in:\n{stdout}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def real_index(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 ham and 300 spam from the shared corpora, deduplicated, ham and spam alternating
    (so the model has learned 200 of each, and decides, well before the end)."""
    sa = corpora / "spamassassin"
    entries = folder_entries(sa / "easy_ham", "ham")[:300] + folder_entries(sa / "spam_2", "spam")[:300]
    stream = build_stream(entries, order=False)
    ham, spam = [e for e in stream if e.label == "ham"], [e for e in stream if e.label == "spam"]
    idx = tmp_path_factory.mktemp("index") / "index"
    write_index([e for pair in zip(ham, spam) for e in pair], idx)
    return idx


def test_online_run_on_real_mail(mailsift_bin: str, real_index: Path, tmp_path: Path) -> None:
    pytest.importorskip("mailsift.classifier.api")
    results, png, db = tmp_path / "out" / "results", tmp_path / "roc.png", tmp_path / "db"
    p = run_cli(mailsift_bin, "--online", str(real_index), "--results", str(results),
                "--plot", str(png), "--dbpath", str(db))
    assert p.returncode == 0, p.stderr
    entries = read_index(real_index)
    lines = results.read_text().splitlines()
    counts = Counter(e.label for e in entries)
    assert len(lines) == len(entries) and counts["ham"] == counts["spam"] > 250
    for line, entry in zip(lines, entries):
        rid, truth, score, judge = line.split(" ")
        assert rid == entry.path.name and truth == entry.label
        assert 0.0 <= float(score) <= 1.0
        assert judge in ("spam", "ham", "unsure")
    assert lines[0].endswith(" unsure")  # an empty model does not guess
    judged = [ln.split()[3] for ln in lines[420:]]
    assert "spam" in judged and "ham" in judged  # it decides once it has learned enough
    # the printed figures are those of the results file
    f = figures(read_results(results))
    assert printed(p.stdout, "messages") == len(entries)
    assert printed(p.stdout, "1-ROCA%") == pytest.approx(f.roca_pct, abs=1e-4)
    assert printed(p.stdout, "hm%") == pytest.approx(f.hm_pct, abs=1e-3)
    assert printed(p.stdout, "sm%") == pytest.approx(f.sm_pct, abs=1e-3)
    assert printed(p.stdout, "lam%") == pytest.approx(f.lam_pct, abs=1e-3)
    assert printed(p.stdout, "sm% at hm%<=0.1") == pytest.approx(f.sm_at_hm01_pct, abs=1e-3)
    # easy ham against spam: a working classifier ranks nearly all of it right
    assert f.roca_pct < 5.0, p.stdout
    data = png.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    # the final model was saved and holds every message
    from mailsift.classifier.api import load_model

    model = load_model(db)
    assert (model.n_ham_, model.n_spam_) == (counts["ham"], counts["spam"])
    # re-reading the results file prints the same figures
    again = run_cli(mailsift_bin, "--results", str(results))
    assert again.returncode == 0, again.stderr
    assert printed(again.stdout, "1-ROCA%") == printed(p.stdout, "1-ROCA%")


def test_limit_and_cv(mailsift_bin: str, real_index: Path, tmp_path: Path) -> None:
    pytest.importorskip("mailsift.classifier.api")
    entries = read_index(real_index)
    spam = [e for e in entries if e.label == "spam"]
    p = run_cli(mailsift_bin, "--online", str(real_index), "--results", str(tmp_path / "r"), "--limit", "40")
    assert p.returncode == 0, p.stderr
    assert len((tmp_path / "r").read_text().splitlines()) == 40
    assert printed(p.stdout, "messages") == 40
    # one class only: the results are written, the figures refused with a reason
    only_spam = tmp_path / "spam.index"
    write_index(spam[:5], only_spam)
    p = run_cli(mailsift_bin, "--online", str(only_spam), "--results", str(tmp_path / "r5"))
    assert p.returncode == 3 and "need both spam and ham" in p.stderr
    assert len((tmp_path / "r5").read_text().splitlines()) == 5
    p = run_cli(mailsift_bin, "--cv", "3", "--index", str(real_index), "--results", str(tmp_path / "cv"))
    assert p.returncode == 0, p.stderr
    recs = read_results(tmp_path / "cv")
    assert sorted(r.id for r in recs) == sorted(e.path.name for e in read_index(real_index))
    assert printed(p.stdout, "1-ROCA%") < 5.0


def test_cv_over_folders_deduplicates(mailsift_bin: str, corpora: Path, tmp_path: Path) -> None:
    pytest.importorskip("mailsift.classifier.api")
    # csdmc2010/spam repeats hundreds of spamassassin/spam messages: folders are deduplicated
    sa = corpora / "spamassassin"
    p = run_cli(mailsift_bin, "--cv", "2", "--ham", str(sa / "hard_ham"), "--spam", str(sa / "spam"),
                str(corpora / "csdmc2010" / "spam"), "--results", str(tmp_path / "cv"), "--limit", "500")
    assert p.returncode == 0, p.stderr
    recs = read_results(tmp_path / "cv")
    assert len(recs) == len({r.id for r in recs}) == 500
    c = Counter(r.truth for r in recs)
    assert c["ham"] > 20 and c["spam"] > 20  # --limit samples across the folders
    m = re.search(r"dropped (\d+) duplicate Message-IDs and (\d+) duplicate bodies", p.stderr)
    assert m and int(m.group(1)) + int(m.group(2)) > 200, p.stderr


def test_bad_input_is_a_clear_error(mailsift_bin: str, tmp_path: Path, data_dir: Path) -> None:
    bad = tmp_path / "index"
    bad.write_text("ham a.eml\nmaybe b.eml\n")
    p = run_cli(mailsift_bin, "--online", str(bad), "--results", str(tmp_path / "r"))
    assert p.returncode == 3
    assert f"{bad}:2: label must be spam or ham" in p.stderr
    missing = tmp_path / "missing-index"
    missing.write_text(f"ham {data_dir / 'evaluate' / 'ham-2003.eml'}\nspam gone.eml\n")
    p = run_cli(mailsift_bin, "--online", str(missing), "--results", str(tmp_path / "r"))
    assert p.returncode == 3 and "listed message not found" in p.stderr and "gone.eml" in p.stderr
    assert not (tmp_path / "r").exists()  # refused before writing anything
    p = run_cli(mailsift_bin, "--results", str(tmp_path / "no-results"))
    assert p.returncode == 3 and "cannot read results" in p.stderr
    p = run_cli(mailsift_bin, "--cv", "3", "--results", str(tmp_path / "r"))
    assert p.returncode == 3 and "--index" in p.stderr


def test_plot_of_constant_scores_is_a_png(tmp_path: Path) -> None:
    from mailsift.classifier.plot import write_plot

    recs = [Record(f"m{i}", "spam" if i % 3 else "ham", 0.5, "unsure") for i in range(30)]
    out = tmp_path / "sub" / "plot.png"
    write_plot(recs, out, figures(recs))
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert [p.name for p in out.parent.iterdir()] == ["plot.png"]  # no temp file left


def test_ids_are_file_names_without_blanks(tmp_path: Path) -> None:
    p = tmp_path / "a message.eml"
    p.write_bytes(b"Subject: x\n\nbody\n")
    (rec,) = run_online([Entry("ham", p)], StubModel())
    assert rec.id == "a_message.eml"
    assert parse_results(format_record(rec))[0].id == "a_message.eml"


def test_model_settings_from_the_command_line(mailsift_bin: str, data_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("mailsift.classifier.api")
    idx = str(data_dir / "evaluate" / "index")
    p = run_cli(mailsift_bin, "--online", idx, "--results", str(tmp_path / "r"), "--set", "no_such_setting=1")
    assert p.returncode == 3 and "unknown model setting(s): no_such_setting" in p.stderr
    assert not (tmp_path / "r").exists()
    p = run_cli(mailsift_bin, "--online", idx, "--results", str(tmp_path / "r"), "--set", "alpha")
    assert p.returncode == 3 and "--set expects KEY=VALUE" in p.stderr
    p = run_cli(mailsift_bin, "--online", idx, "--results", str(tmp_path / "r"), "--set", "hash_bits=12")
    assert p.returncode == 0, p.stderr
    assert printed(p.stdout, "messages") == 9
