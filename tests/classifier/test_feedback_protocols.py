"""The user-like feedback protocols of `mailsift evaluate --online` (issue 12): what each mode
teaches and when, on a small labelled stream of our own, and the command as a user runs it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mailsift.classifier.corpus import Entry, read_index, write_index
from mailsift.classifier.evaluate import Feedback, misfiled, run_feedback
from mailsift.classifier.metrics import Record, decides_from, decides_line, window_lines, windows
from mailsift.verdict import Verdict


class ScriptedModel:
    """Judges each message as its file says (`Subject: judge=spam|ham|unsure`), records what
    it is taught and where in the stream, and refuses to score what it has learned."""

    def __init__(self) -> None:
        self.position = 0
        self.taught: list[tuple[int, str, str]] = []  # (position when taught, message, label)
        self.seen: set[bytes] = set()

    def _judge(self, raw: bytes) -> str:
        m = re.search(rb"judge=(\w+)", raw)
        assert m
        return m.group(1).decode()

    def spamminess(self, raw: bytes) -> float:
        assert raw not in self.seen, "scored a message it had learned"
        return {"spam": 0.99, "ham": 0.01, "unsure": 0.85}[self._judge(raw)]

    def verdict(self, raw: bytes, required: float = 5.0) -> Verdict:
        self.position += 1
        judge = self._judge(raw)
        return Verdict(self.spamminess(raw), {"spam": 9.0, "ham": -2.0, "unsure": 4.5}[judge], required,
                       unsure=judge == "unsure")

    def learn(self, raw: bytes, label: str) -> None:
        self.seen.add(raw)
        name = re.search(rb"id=(\d+)", raw).group(1).decode()  # type: ignore[union-attr]
        self.taught.append((self.position, name, label))


# (truth, what the model will judge): right, wrong and unsure both ways
STREAM = [("spam", "spam"), ("ham", "ham"), ("spam", "ham"), ("ham", "spam"), ("spam", "unsure"),
          ("ham", "unsure"), ("ham", "ham"), ("spam", "spam")]


def stream(tmp_path: Path) -> list[Entry]:
    out = []
    for i, (truth, judge) in enumerate(STREAM):
        p = tmp_path / f"m{i}.eml"
        p.write_bytes(f"Subject: id={i} judge={judge}\n\nbody {i}\n".encode())
        out.append(Entry(truth, p))
    return out


def test_feedback_parse() -> None:
    assert Feedback.parse("errors") == Feedback("errors")
    assert Feedback.parse("implicit:1000") == Feedback("implicit", 1000)
    assert str(Feedback.parse("implicit:0")) == "implicit:0"
    for bad in ("implicit", "implicit:x", "implicit:-1", "errors:3", "some"):
        with pytest.raises(ValueError):
            Feedback.parse(bad)


def test_misfiled_is_what_a_user_corrects() -> None:
    assert misfiled(Record("a", "spam", 0.5, "ham")) and misfiled(Record("a", "spam", 0.5, "unsure"))
    assert misfiled(Record("a", "ham", 0.5, "spam"))
    assert not misfiled(Record("a", "ham", 0.5, "unsure")) and not misfiled(Record("a", "spam", 0.5, "spam"))


def test_full_teaches_every_message_at_once(tmp_path: Path) -> None:
    m = ScriptedModel()
    run_feedback(stream(tmp_path), m, Feedback("full"))
    assert m.taught == [(i + 1, str(i), truth) for i, (truth, _) in enumerate(STREAM)]


def test_errors_teaches_only_misfiled_messages_at_once(tmp_path: Path) -> None:
    m = ScriptedModel()
    recs = run_feedback(stream(tmp_path), m, Feedback("errors"))
    # spam judged ham (#2), ham judged spam (#3), spam left unsure in the inbox (#4)
    assert m.taught == [(3, "2", "spam"), (4, "3", "ham"), (5, "4", "spam")]
    assert [r.judge for r in recs] == [j for _, j in STREAM]


def test_implicit_teaches_errors_at_once_and_the_rest_later(tmp_path: Path) -> None:
    m = ScriptedModel()
    run_feedback(stream(tmp_path), m, Feedback("implicit", 3))
    errors = [(3, "2", "spam"), (4, "3", "ham"), (5, "4", "spam")]
    assert [t for t in m.taught if t in errors] == errors
    later = [t for t in m.taught if t not in errors]
    # message i (1-based) is confirmed before message i+3 is scored; the last ones never are
    assert later == [(3, "0", "spam"), (4, "1", "ham")]  # #5 (id 5) would be due at message 9


def test_none_teaches_nothing(tmp_path: Path) -> None:
    m = ScriptedModel()
    run_feedback(stream(tmp_path), m, Feedback("none"))
    assert m.taught == []


def test_label_noise_flips_the_share_asked_and_only_what_is_taught(tmp_path: Path) -> None:
    entries = stream(tmp_path) * 1  # each message once
    m = ScriptedModel()
    recs = run_feedback(entries, m, Feedback("errors"), label_noise=0.49, seed=3)
    assert [r.truth for r in recs] == [t for t, _ in STREAM]  # scoring keeps the truth
    flipped = sum(label != STREAM[int(name)][0] for _, name, label in m.taught)
    assert 0 < flipped <= len(m.taught)


def test_windows_count_what_users_see() -> None:
    recs = [Record(str(i), t, 0.5, j) for i, (t, j) in enumerate(STREAM)]
    w = windows(recs, 4)
    assert len(w) == 3  # two windows and the whole stream
    first, second, whole = w
    assert (first.start, first.end, first.n_ham, first.n_spam) == (1, 4, 2, 2)
    assert (first.ham_to_junk, first.spam_to_inbox, first.unsure) == (1, 1, 0)
    assert (second.ham_to_junk, second.spam_to_inbox, second.unsure) == (0, 1, 2)
    assert (whole.ham_to_junk, whole.spam_to_inbox, whole.unsure) == (1, 2, 2)


def test_the_report_says_from_which_message_the_model_decides() -> None:
    # an empty model: unsure for its first three messages, then deciding (one unsure near the threshold)
    judged = [("spam", "unsure"), ("ham", "unsure"), ("spam", "unsure"), ("ham", "spam"), ("spam", "spam"),
              ("ham", "unsure"), ("ham", "ham"), ("spam", "ham")]
    recs = [Record(str(i), t, 0.5, j) for i, (t, j) in enumerate(judged)]
    assert decides_from(recs) == 4
    assert decides_line(recs).startswith("decides from    message 4 ")
    lines = window_lines(recs, 4)
    assert lines[-1].startswith("all   1-8 ")
    row = lines[-2].split()  # from the first decided message on: 3 ham (1 to Junk), 2 spam (1 left), 1 unsure
    assert row == ["from", "4-8", "3", "2", "33.33", "50.00", "20.00"], lines
    # a model that decides from the first message has no such row; one that never decides says so
    decided = [Record("a", "ham", 0.1, "ham"), Record("b", "spam", 0.9, "unsure")]
    assert decides_line(decided) == "decides from    message 1"
    assert not any(ln.startswith("from") for ln in window_lines(decided))
    never = [Record("a", "ham", 0.1, "unsure"), Record("b", "spam", 0.9, "unsure")]
    assert decides_from(never) is None and decides_line(never).startswith("decides from    never")
    assert not any(ln.startswith("from") for ln in window_lines(never))


@pytest.fixture(scope="module")
def xsite(corpora: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A default-style model trained on 150 ham + 150 spam of SpamAssassin's corpus (then
    marked as the prior, as `make model` does), and an index of 120 messages of CSDMC2010."""
    from mailsift.classifier.api import new_model, save_model
    from mailsift.classifier.corpus import folder_entries

    sa, cs = corpora / "spamassassin", corpora / "csdmc2010"
    model = new_model()
    train = folder_entries(sa / "easy_ham", "ham")[:200] + folder_entries(sa / "spam_2", "spam")[:200]
    for e in sorted(train, key=lambda e: e.path.name):
        model.learn(e.path.read_bytes(), e.label)
    model.mark_prior()
    db = tmp_path_factory.mktemp("start")
    save_model(model, db)
    test = folder_entries(cs / "ham", "ham")[:60] + folder_entries(cs / "spam", "spam")[:60]
    idx = tmp_path_factory.mktemp("xsite") / "index"
    write_index(sorted(test, key=lambda e: e.path.name), idx)
    return db, idx


def test_evaluate_from_a_start_model_with_errors_feedback(mailsift_bin: str, xsite: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    db, idx = xsite
    before = {p.name: p.read_bytes() for p in db.iterdir() if p.is_file()}
    results = tmp_path / "r"
    p = subprocess.run([mailsift_bin, "evaluate", "--online", str(idx), "--results", str(results),
                        "--start", str(db), "--feedback", "errors", "--window", "50"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "feedback        errors, start " + str(db) in p.stdout
    assert re.search(r"^decides from    message \d+", p.stdout, re.M), p.stdout
    rows = [ln for ln in p.stdout.splitlines() if re.match(r"^\s*\d+-\d+", ln)]
    assert len(rows) == 3  # 1-50, 51-100, 101-120
    whole = p.stdout.splitlines()[-1]
    assert whole.startswith("all ")
    n = len(read_index(idx))
    lines = results.read_text().splitlines()
    assert len(lines) == n
    # a default model decides from the first message (it is not an empty model)
    assert any(ln.endswith((" spam", " ham")) for ln in lines[:10])
    # the start model is a copy: its files are untouched
    assert {p.name: p.read_bytes() for p in db.iterdir() if p.is_file()} == before


def test_evaluate_refuses_bad_feedback(mailsift_bin: str, xsite: tuple[Path, Path], tmp_path: Path) -> None:
    _, idx = xsite
    for args in (["--feedback", "implicit"], ["--feedback", "sometimes"], ["--start", str(tmp_path / "none")],
                 ["--label-noise", "0.7"]):
        p = subprocess.run([mailsift_bin, "evaluate", "--online", str(idx), "--results", str(tmp_path / "r"),
                            *args], capture_output=True, text=True, timeout=120)
        assert p.returncode == 3, (args, p.stdout, p.stderr)
        assert p.stderr.startswith("mailsift evaluate: "), p.stderr
