"""Session-level differential test: the same APPENDs, FETCH and SEARCH commands sent to
`mailsift serve` and to a private Dovecot; the parsed responses must agree (BODYSTRUCTURE,
BODY, ENVELOPE, BODY[section] bytes, partials, RFC822.SIZE, FLAGS, SEARCH results)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imap import dovecot_pair
from imap import dovecot_reference as ref
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap import mimetree

pytestmark = pytest.mark.integration

USER, PW = "diff@example.test", "diff-pw"
PER_FOLDER = 8


@pytest.fixture(scope="module")
def pair(mailsift_bin: str, data_dir: Path, corpora: Path):
    files = ref.sample_messages(data_dir, corpora, PER_FOLDER, seed=4242)

    def fill(w: Wire) -> None:
        dovecot_pair.append_messages(w, (f.read_bytes() for f in files), ref.append_args)
        _, done = w.command("SELECT INBOX")
        assert b" OK " in done, done

    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-sdiff-") as peers, \
            dovecot_pair.sessions(peers, USER, PW, setup=fill) as (ours, theirs):
        yield files, ours, theirs


def test_fetch_responses_agree(pair) -> None:
    files, ours, theirs = pair
    diffs = []
    for seq, f in enumerate(files, 1):
        root = mimetree.parse(mimetree.to_crlf(f.read_bytes()))
        command = ref.fetch_command(seq, ref.section_specs(root)).replace("RFC822.SIZE", "FLAGS RFC822.SIZE")
        a_untagged, a_done = ours.command(command)
        b_untagged, b_done = theirs.command(command)
        assert b" OK " in a_done and b" OK " in b_done, (a_done, b_done)
        a, b = fetch_items(a_untagged[0]), fetch_items(b_untagged[0])
        a["FLAGS"], b["FLAGS"] = sorted(a["FLAGS"]), sorted(b["FLAGS"])  # a set
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                diffs.append(f"{f.name} {key}:\n  dovecot: {b.get(key)!r:.300}\n  ours:    {a.get(key)!r:.300}")
    assert not diffs, "\n".join(diffs[:20])


def test_search_responses_agree(pair) -> None:
    files, ours, theirs = pair
    diffs = []
    for query in ref.SEARCHES:
        for prefix in (b"SEARCH ", b"UID SEARCH "):
            a, _ = ours.command(prefix + query)
            b, _ = theirs.command(prefix + query)
            if sorted(a) != sorted(b):
                diffs.append(f"{prefix + query!r}: ours {a!r:.200} dovecot {b!r:.200}")
    assert not diffs, "\n".join(diffs)
