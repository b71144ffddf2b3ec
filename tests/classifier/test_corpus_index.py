"""Index files, deduplication and Date ordering on the small messages in tests/data/evaluate/."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsift.classifier.corpus import (
    Entry,
    IndexFileError,
    StreamStats,
    build_stream,
    folder_entries,
    message_info,
    parse_index,
    read_index,
    write_index,
)


@pytest.fixture()
def evdata(data_dir: Path) -> Path:
    return data_dir / "evaluate"


def test_relative_paths_resolve_against_the_index_folder(evdata: Path) -> None:
    entries = read_index(evdata / "index")
    assert len(entries) == 9
    assert entries[0] == Entry("ham", evdata / "ham-2003.eml")
    assert entries[1].label == "spam" and entries[1].id == "spam-2002.eml"


def test_absolute_paths_comments_blank_lines_and_case(tmp_path: Path, evdata: Path) -> None:
    msg = evdata / "spam-2002.eml"
    text = f"# a comment\n\nSPAM {msg}\n  ham   sub dir/with space.eml  \n"
    entries = parse_index(text, tmp_path)
    assert entries == [Entry("spam", msg), Entry("ham", tmp_path / "sub dir/with space.eml")]


@pytest.mark.parametrize(
    "line, message",
    [
        ("spam", r"idx:2: expected 'spam PATH' or 'ham PATH'"),
        ("junk some/file", r"idx:2: label must be spam or ham, got 'junk'"),
        ("1 some/file", r"idx:2: label must be spam or ham"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(IndexFileError, match=message):
        parse_index(f"ham a\n{line}\n", tmp_path, "idx")


def test_missing_file_and_missing_index_are_clear_errors(tmp_path: Path, evdata: Path) -> None:
    idx = tmp_path / "index"
    idx.write_text(f"ham {evdata / 'ham-2003.eml'}\nspam nowhere.eml\nham gone.eml\n")
    with pytest.raises(IndexFileError, match=r"listed message not found: .*nowhere.eml \(and 1 more\)"):
        read_index(idx)
    assert len(read_index(idx, check_files=False)) == 3
    with pytest.raises(IndexFileError, match="cannot read index"):
        read_index(tmp_path / "no-such-index")
    (tmp_path / "empty").write_text("# nothing\n")
    with pytest.raises(IndexFileError, match="no messages"):
        read_index(tmp_path / "empty")


def test_write_then_read_round_trips_relative_and_absolute(tmp_path: Path, evdata: Path) -> None:
    entries = read_index(evdata / "index")
    rel = tmp_path / "out" / "rel.index"
    write_index(entries, rel)
    text = rel.read_text()
    assert not any(line.split(" ", 1)[1].startswith("/") for line in text.splitlines())
    assert [(e.label, e.path.resolve()) for e in read_index(rel)] == [(e.label, e.path.resolve()) for e in entries]
    ab = tmp_path / "abs.index"
    write_index(entries, ab, absolute=True)
    assert all(line.split(" ", 1)[1].startswith("/") for line in ab.read_text().splitlines())
    assert [(e.label, e.path) for e in read_index(ab)] == [(e.label, e.path.resolve()) for e in entries]


def test_folder_entries_skip_hidden_and_cmds(tmp_path: Path) -> None:
    for name in ("b", "a", ".hidden", "cmds"):
        (tmp_path / name).write_bytes(b"Subject: x\n\nbody\n")
    (tmp_path / "sub").mkdir()
    assert [e.id for e in folder_entries(tmp_path, "ham")] == ["a", "b"]
    with pytest.raises(IndexFileError, match="not a folder"):
        folder_entries(tmp_path / "nope", "spam")


def test_message_info_parses_folded_ids_and_dates(evdata: Path) -> None:
    a = message_info((evdata / "ham-2003.eml").read_bytes())
    b = message_info((evdata / "dup-message-id.eml").read_bytes())
    assert a.message_id == b.message_id == "one@example.org"
    assert a.body_digest != b.body_digest
    assert a.date == 1041501600.0 and a.date_source == "date"  # 2003-01-02 10:00 UTC
    r = message_info((evdata / "spam-received-2001.eml").read_bytes())
    assert r.date_source == "received" and r.date == 983703600.0  # 2001-03-04 11:00 UTC
    forged = message_info((evdata / "spam-forged-date.eml").read_bytes())
    assert forged.date_source == "received"  # a Date in 1900 is not an arrival time
    none = message_info((evdata / "ham-undated.eml").read_bytes())
    assert none.date is None and none.date_source == "none"
    empty = message_info((evdata / "empty-body-a.eml").read_bytes())
    assert empty.body_digest is None and empty.message_id is None


def test_message_info_never_raises_on_garbage() -> None:
    for raw in (b"", b"\x00\xff" * 100, b"no headers at all", b"Date: \x00\n\n", b"Message-ID: <>\n\nx",
                b"Received: ; ;\nDate: Mon, 99 Foo 99999 99:99:99 +9999\n\nbody"):
        message_info(raw)


def test_stream_dedups_first_seen_and_orders_by_date(evdata: Path) -> None:
    stats = StreamStats()
    stream = build_stream(read_index(evdata / "index"), stats=stats)
    assert [e.id for e in stream] == [
        "spam-received-2001.eml",  # 2001-03-04, from its Received line
        "spam-2002.eml",  # 2002-06-01
        "spam-forged-date.eml",  # 2002-06-05, from its Received line
        "ham-2003.eml",
        "empty-body-a.eml",  # empty bodies are not duplicates of each other
        "empty-body-b.eml",
        "ham-undated.eml",  # undated: last
    ]
    assert stats.read == 9
    assert stats.duplicates_message_id == 1  # dup-message-id.eml
    assert stats.duplicates_body == 1  # dup-body.eml
    assert stats.dated_by_received == 2 and stats.undated == 1
    assert stats.label_conflicts == []


def test_stream_reports_label_conflicts_and_can_keep_order(tmp_path: Path, evdata: Path) -> None:
    idx = tmp_path / "index"
    idx.write_text(f"ham {evdata / 'spam-2002.eml'}\nspam {evdata / 'dup-body.eml'}\nham {evdata / 'ham-2003.eml'}\n")
    stats = StreamStats()
    stream = build_stream(read_index(idx), order=False, stats=stats)
    assert [e.id for e in stream] == ["spam-2002.eml", "ham-2003.eml"]
    assert len(stats.label_conflicts) == 1
    assert [e.id for e in build_stream(read_index(idx), dedup=False, order=False)] == \
        ["spam-2002.eml", "dup-body.eml", "ham-2003.eml"]


def test_unreadable_message_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IndexFileError, match="cannot read"):
        build_stream([Entry("ham", tmp_path / "missing.eml")])

header_bytes = st.lists(
    st.sampled_from([b"Date: ", b"Message-ID: <", b"Received: from x; ", b"\r\n", b"\n", b"\n\n", b" ",
                     b"\t", b":", b";", b"<", b">", b"Mon, 1 Jan 2003 00:00:00 +0000", b"\x00", b"\xff",
                     b"From ", b"a", b"99999999999999999999"]),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=400), header_bytes))
def test_message_info_total_on_any_bytes(raw: bytes) -> None:
    info = message_info(raw)
    assert info.date_source in ("date", "received", "none")
    assert (info.date is None) == (info.date_source == "none")


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=200))
def test_parse_index_returns_or_names_the_line(text: str) -> None:
    try:
        entries = parse_index(text, Path("/base"), "idx")
    except IndexFileError as exc:
        assert str(exc).startswith("idx:")
        return
    assert all(e.label in ("spam", "ham") for e in entries)
