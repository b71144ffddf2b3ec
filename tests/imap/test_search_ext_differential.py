"""Differential tests of the search-side extensions: the same messages APPENDed to `mailsift
serve` and to a private Dovecot 2.3, then the same ESEARCH/SEARCHRES/SORT/THREAD/... commands
sent to both; the answers (untagged SEARCH, ESEARCH, SORT, THREAD and FETCH lines, and the
tagged status) must agree. Messages: the ones made for these extensions
(search_ext_messages.py), our odd MIME samples and a fixed sample of the corpora."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from imap import dovecot_pair
from imap import dovecot_reference as ref
from imap import search_ext_messages as made
from imap.wire import Wire

pytestmark = pytest.mark.integration

USER, PW = "sdiff@example.test", "sdiff-pw"
PER_FOLDER = 12

ESEARCH = [
    "SEARCH RETURN (MIN MAX ALL COUNT) ALL", "SEARCH RETURN () ALL", "SEARCH RETURN (COUNT) DELETED",
    "SEARCH RETURN (MIN MAX ALL COUNT) KEYWORD nosuch", "SEARCH RETURN (ALL COUNT MIN) 1,2,4:6",
    "UID SEARCH RETURN (MIN MAX ALL COUNT) ALL", "UID SEARCH RETURN (MAX) SEEN", "SEARCH RETURN (MIN) UNSEEN",
    "SEARCH RETURN (COUNT) FROM b.test", "SEARCH RETURN (ALL) OR FLAGGED SUBJECT hello",
    "UID SEARCH RETURN (COUNT ALL) NOT SEEN", "SEARCH RETURN (ALL) CHARSET UTF-8 TEXT hello",
    "SEARCH RETURN (ALL) MODSEQ 1", "SEARCH RETURN (FOO) ALL", "SEARCH RETURN (MIN) NOTAKEY",
    "SEARCH RETURN ALL ALL", "UID SEARCH RETURN (ALL) UID 5:*",
]

SEARCHRES = [  # in this order: each $ is what the SEARCH before it saved
    "FETCH $ (UID)", "SEARCH RETURN (SAVE) SEEN", "FETCH $ (UID)", "UID FETCH $ (UID)", "SEARCH $",
    "SEARCH UID $", "SEARCH OR $ 1", "SEARCH NOT $", "UID SEARCH $ FLAGGED", "FETCH 1,$ (UID)",
    "SEARCH RETURN (SAVE MIN) UNSEEN", "FETCH $ (UID)", "SEARCH RETURN (SAVE MIN MAX) FROM b.test",
    "FETCH $ (UID)", "UID SEARCH RETURN (SAVE ALL) UID 3:7", "FETCH $ (UID)", "SEARCH RETURN (SAVE COUNT) 2:4",
    "UID FETCH $ (UID)", "SEARCH RETURN (SAVE) FOOBAR", "FETCH $ (UID)", "SEARCH RETURN (SAVE MAX) $",
    "FETCH $ (UID)", "SEARCH RETURN (SAVE) KEYWORD nosuch", "FETCH $ (UID)", "SEARCH $",
]

SORT = [f"{uid}SORT ({crit}) UTF-8 {keys}" for uid in ("", "UID ")
        for crit in ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO",
                     "REVERSE ARRIVAL", "REVERSE DATE", "REVERSE SUBJECT", "REVERSE SIZE", "SUBJECT DATE",
                     "SUBJECT REVERSE DATE", "REVERSE FROM SIZE", "REVERSE TO REVERSE CC ARRIVAL",
                     "DISPLAYFROM REVERSE SUBJECT")
        for keys in ("ALL", "NOT SEEN")] + [
    "SORT (SUBJECT) US-ASCII 1:10", "SORT (DATE) UTF-8 DELETED", "SORT (FOO) UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL",
    "SORT () UTF-8 ALL", "SORT (SUBJECT) UTF-8", "SORT SUBJECT UTF-8 ALL", "SORT (SUBJECT REVERSE) UTF-8 ALL",
    "SORT RETURN (MIN MAX ALL COUNT) (SUBJECT) UTF-8 ALL", "UID SORT RETURN () (REVERSE ARRIVAL) UTF-8 ALL",
    "SORT RETURN (COUNT) (DATE) UTF-8 KEYWORD nosuch", "UID SORT RETURN (MIN MAX) (FROM) UTF-8 SEEN",
    "SORT RETURN (ALL) (DATE) UTF-8 MODSEQ 1", "SORT RETURN (SAVE MIN) (REVERSE SIZE) UTF-8 ALL", "FETCH $ (UID)",
    "SORT RETURN (SAVE) (SUBJECT) UTF-8 2:5", "UID FETCH $ (UID)", "SORT (SIZE) UTF-8 $",
]

THREAD = [f"{uid}THREAD {alg} UTF-8 {keys}" for uid in ("", "UID ") for alg in ("ORDEREDSUBJECT", "REFERENCES")
          for keys in ("ALL", "1:20", "NOT SEEN", "SUBJECT hello", "DELETED", "OR 2 12")] + [
    "THREAD FOO UTF-8 ALL", "THREAD REFERENCES UTF-8",  # REFS and other charsets: Dovecot only
    "SEARCH RETURN (SAVE) 1:8", "THREAD REFERENCES US-ASCII $",
]

def within() -> list[str]:
    """YOUNGER/OLDER split the made INTERNALDATEs (7-10 Mar 2020, on the hour) at 9 Mar 00:30Z."""
    import time
    split = int(time.time() - dt.datetime(2020, 3, 9, 0, 30, tzinfo=dt.timezone.utc).timestamp())
    return [f"SEARCH YOUNGER {split}", f"SEARCH OLDER {split}", f"UID SEARCH NOT YOUNGER {split}",
            f"SEARCH OR YOUNGER {split} SEEN", "SEARCH YOUNGER 100", "SEARCH OLDER 100",
            f"SEARCH RETURN (COUNT) OLDER {split}", "SEARCH YOUNGER 0", "SEARCH OLDER x", "SEARCH YOUNGER"]


PREVIEW = ["FETCH 1:* (PREVIEW)", "UID FETCH 1:5 (UID PREVIEW (LAZY))", "FETCH 1 (PREVIEW (FOO))",
           "FETCH 2 (PREVIEW FLAGS)"]

def binary(count: int) -> list[str]:
    """BINARY sections of every message. BINARY.SIZE is left out: Dovecot 2.3.19's size is not
    always the length of its own BINARY answer (2776 against 2780 octets); ours is, and
    test_search_ext.py checks that."""
    return [f"FETCH {seq} ({att})" for seq in range(1, count + 1)
            for att in ("BINARY.PEEK[1]", "BINARY.PEEK[]", "BINARY.PEEK[2]<1.40>", "BINARY.PEEK[1.1]")]


# a quoted-printable `=` not followed by two hex digits or a line end: Dovecot answers NO to
# BINARY of such a part, we keep the `=` as RFC 2045 6.7 asks
_BAD_QP = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n)")


_KEEP = re.compile(rb"^\* (SEARCH|ESEARCH|SORT|THREAD|\d+ FETCH)\b")


@pytest.fixture(scope="module")
def pair(mailsift_bin: str, data_dir: Path, corpora: Path):
    files = [f.read_bytes() for f in ref.sample_messages(data_dir, corpora, PER_FOLDER, seed=5182)]
    messages = made.MESSAGES + files
    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-xdiff-") as peers:

        def fill(w: Wire) -> None:
            try:
                dovecot_pair.append_messages(w, messages, made.append_args)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{peers[0].log()[-6000:]}") from None
            _, done = w.command("SELECT INBOX")
            assert b" OK " in done, done

        with dovecot_pair.sessions(peers, USER, PW, setup=fill) as wires:
            yield wires


def answer(w: Wire, command: str) -> tuple[list[bytes], bytes]:
    """The lines that carry results (TAG, MODSEQ values and trailing blanks normalised) and
    the status word."""
    untagged, done = w.command(command.encode())
    lines = [re.sub(rb'\(TAG "[^"]*"\)', b'(TAG "t")', u).rstrip() for u in untagged if _KEEP.match(u)]
    # MODSEQ values are each store's own numbering: only their presence must agree
    lines = [re.sub(rb"MODSEQ (\(?)\d+", rb"MODSEQ \1n", u) for u in lines]
    return lines, done.split()[1]


def differences(pair, commands: list[str]) -> list[str]:
    ours, theirs = pair
    out = []
    for command in commands:
        a, b = answer(ours, command), answer(theirs, command)
        if a != b and a[1] == b[1] and len(a[0]) == len(b[0]) > 1:  # many lines: the ones that differ
            out += [f"{command}:\n  dovecot: {y!r:.400}\n  ours:    {x!r:.400}" for x, y in zip(a[0], b[0]) if x != y]
        elif a != b:
            out.append(f"{command}:\n  dovecot: {b!r:.400}\n  ours:    {a!r:.400}")
    return out


def test_esearch_agrees(pair) -> None:
    diffs = differences(pair, ESEARCH)
    assert not diffs, "\n".join(diffs)


def test_searchres_agrees(pair) -> None:
    diffs = differences(pair, SEARCHRES)
    assert not diffs, "\n".join(diffs)


def test_sort_agrees(pair) -> None:
    diffs = differences(pair, SORT)
    assert not diffs, "\n".join(diffs)


def test_thread_agrees(pair) -> None:
    diffs = differences(pair, THREAD)
    assert not diffs, "\n".join(diffs)


def test_within_agrees(pair) -> None:
    diffs = differences(pair, within())
    assert not diffs, "\n".join(diffs)


def test_preview_agrees(pair) -> None:
    diffs = differences(pair, PREVIEW)
    assert not diffs, "\n".join(diffs)


def test_binary_agrees(pair, data_dir: Path, corpora: Path) -> None:
    messages = made.MESSAGES + [f.read_bytes() for f in ref.sample_messages(data_dir, corpora, PER_FOLDER, seed=5182)]
    ours, theirs = pair
    diffs = []
    for command in binary(len(messages)):
        a, b = answer(ours, command), answer(theirs, command)
        seq = int(command.split()[1])
        if a != b and not (b[1] == b"NO" and a[1] == b"OK" and _BAD_QP.search(messages[seq - 1])):
            diffs.append(f"{command}:\n  dovecot: {b!r:.300}\n  ours:    {a!r:.300}")
    assert not diffs, "\n".join(diffs)


def test_capabilities_are_a_subset_of_dovecots(pair) -> None:
    """Everything we announce beyond IMAP4rev1 basics Dovecot announces too, so every
    differential test above compares like with like."""
    ours, theirs = pair
    a = set(ours.command("CAPABILITY")[0][0].decode().split()[2:])
    b = set(theirs.command("CAPABILITY")[0][0].decode().split()[2:])
    from mailsift.protocols.imap.session import SEARCH_CAPABILITIES
    assert set(SEARCH_CAPABILITIES) <= a
    assert set(SEARCH_CAPABILITIES) <= b


def savedate() -> list[str]:
    """SAVEDATE (RFC 8514): the messages were APPENDed today (INTERNALDATEs in March 2020); a
    COPY is saved today again and keeps its INTERNALDATE. (Run last: it leaves a folder.)"""
    today = dt.datetime.now(dt.timezone.utc).date()
    day, nextday = (f"{d.day}-{d.strftime('%b')}-{d.year}" for d in (today, today + dt.timedelta(days=1)))
    return [f"SEARCH SAVEDON {day}", f"SEARCH SAVEDSINCE {day}", f"SEARCH SAVEDBEFORE {day}",
            f"UID SEARCH SAVEDBEFORE {nextday}", f"SEARCH SAVEDSINCE {nextday}", "SEARCH SAVEDON 8-Mar-2020",
            "SEARCH SAVEDATESUPPORTED", "SEARCH NOT SAVEDATESUPPORTED", f"SEARCH OR SEEN SAVEDSINCE {nextday}",
            f"SEARCH RETURN (COUNT MIN) SAVEDON {day}", "SEARCH SAVEDON 32-Foo-2020", "SEARCH SAVEDSINCE",
            "FETCH 1:4 (SAVEDATE)", "UID FETCH 2 (SAVEDATE INTERNALDATE FLAGS)",
            "CREATE SaveDst", "COPY 1:4 SaveDst", "EXAMINE SaveDst", f"SEARCH SAVEDON {day}", f"SEARCH ON {day}",
            "FETCH 1:* (INTERNALDATE)", "SELECT INBOX"]


_SAVEDATE_VALUE = re.compile(rb'SAVEDATE "\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d [+-]\d{4}"')


def test_savedate_agrees(pair) -> None:
    """The same answers, save date values aside (each server saved at its own second, in its
    own zone): there only the form of a date-time must agree."""
    ours, theirs = pair
    diffs = []
    for command in savedate():
        a, b = ([_SAVEDATE_VALUE.sub(b'SAVEDATE "date"', u) for u in lines] + [status]
                for lines, status in (answer(ours, command), answer(theirs, command)))
        if a != b:
            diffs.append(f"{command}:\n  dovecot: {b!r:.400}\n  ours:    {a!r:.400}")
    assert not diffs, "\n".join(diffs)
