"""Differential tests: the same messages in a private Dovecot (Debian's dovecot-imapd) and in our
pure functions; BODYSTRUCTURE, BODY, ENVELOPE, BODY[section] bytes, partials, RFC822.SIZE and
SEARCH results must agree. Dovecot is the reference where the RFC leaves doubt."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.dovecot import DovecotInstance
from imap import dovecot_pair
from imap import dovecot_reference as ref
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap import mimetree, search
from mailsift.protocols.imap.parser import parse_command

pytestmark = pytest.mark.integration

USER, PASSWORD = "diff@example.test", "diff-secret"
PER_FOLDER = 25


@pytest.fixture(scope="module")
def files(data_dir: Path, corpora: Path) -> list[Path]:
    return ref.sample_messages(data_dir, corpora, PER_FOLDER)


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory, files: list[Path]):
    dc = DovecotInstance(tmp_path_factory.mktemp("dovecot"), {USER: PASSWORD}, pop3=False, lmtp=False)
    dc.start()
    wire = None
    try:
        wire = Wire(dc.host, dc.imap_port)
        wire.login(USER, PASSWORD)
        dovecot_pair.append_messages(wire, (f.read_bytes() for f in files), ref.append_args)
        _, done = wire.command("SELECT INBOX")
        assert b" OK " in done
        yield wire
    finally:
        if wire is not None:
            wire.close()
        dc.stop()


def _compare(wire: Wire, seq: int, path: Path) -> list[str]:
    raw = mimetree.to_crlf(path.read_bytes())
    root = mimetree.parse(raw)
    specs = ref.section_specs(root)
    untagged, done = wire.command(ref.fetch_command(seq, specs))
    assert b" OK " in done, done
    got = fetch_items(untagged[0])
    diffs = []
    for name, value in ref.expected_items(raw, root, specs).items():
        theirs = got.get(name.upper(), "MISSING")
        if theirs != value:
            diffs.append(f"{path.name} {name}:\n  dovecot: {theirs!r:.400}\n  ours:    {value!r:.400}")
    return diffs


def test_fetch_of_our_odd_mime_matches_dovecot(dovecot: Wire, files: list[Path]) -> None:
    odd = [(i, f) for i, f in enumerate(files, 1) if f.parent.name == "imap"]
    assert len(odd) >= 15
    diffs = [d for i, f in odd for d in _compare(dovecot, i, f)]
    assert not diffs, "\n".join(diffs)


def test_fetch_of_corpus_sample_matches_dovecot(dovecot: Wire, files: list[Path]) -> None:
    sample = [(i, f) for i, f in enumerate(files, 1) if f.parent.name != "imap"]
    assert len(sample) >= 150
    diffs = [d for i, f in sample for d in _compare(dovecot, i, f)]
    assert not diffs, "\n".join(diffs[:20])


def test_search_matches_dovecot(dovecot: Wire, files: list[Path]) -> None:
    views = ref.views(files)
    diffs = []
    hits = 0
    for query in ref.SEARCHES:
        untagged, done = dovecot.command(b"SEARCH " + query)
        assert b" OK " in done, (query, done)
        theirs = sorted(int(x) for line in untagged if line.startswith(b"* SEARCH") for x in line.split()[2:])
        key = parse_command(b"x SEARCH " + query).args["key"]
        ours = [m.seq for m in search.search(key, views)]
        hits += 0 < len(ours) < len(views)
        if theirs != ours:
            diffs.append(f"{query!r}: only dovecot {sorted(set(theirs) - set(ours))[:10]}, "
                         f"only ours {sorted(set(ours) - set(theirs))[:10]}")
    assert not diffs, "\n".join(diffs)
    assert hits >= len(ref.SEARCHES) // 2  # the queries discriminate, they are not all-or-nothing
