"""Issue 14, found in review: `1:*,1:*,...` (16,000 ranges in one 64 KB line) expanded every
range into a set of numbers on the event loop (seconds per command, growing with the mailbox).
Ranges are now merged (sorted, overlapping and adjacent ones joined), never expanded beyond
the messages the mailbox has."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from imap.test_caches import append, msg, ok
from imap.wire import Wire
from mailsift.protocols.imap.mailboxview import BadSequence, MailboxView
from mailsift.protocols.imap.parser import Limits, parse_command, parse_sequence_set
from mailsift.store.listing import MessageInfo

USER, PW = "pia@example.test", "pia-pw"
HOSTILE = ",".join(["1:*"] * 16_000)


def view(uids: list[int]) -> MailboxView:
    v = MailboxView("INBOX", False, 1)
    v.load(MessageInfo(u, frozenset(), 0.0, 10, 1, str(u)) for u in uids)
    return v


def test_ranges_are_merged() -> None:
    s = parse_sequence_set("7:*,1:3,4,2:2,20:30,*")
    assert s.resolve(10) == [(1, 4), (7, 10), (20, 30)]
    assert parse_sequence_set(HOSTILE).resolve(5) == [(1, 5)]
    assert [n for n in range(0, 40) if s.contains(n, 10)] == [1, 2, 3, 4, 7, 8, 9, 10] + list(range(20, 31))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(1, 30)), st.one_of(st.none(), st.integers(1, 30))),
                min_size=1, max_size=8),
       st.lists(st.integers(1, 40), unique=True, max_size=25), st.booleans())
def test_resolve_names_exactly_the_numbers_of_the_ranges(ranges, uids, by_uid) -> None:
    uids.sort()
    text = ",".join(f"{'*' if a is None else a}:{'*' if b is None else b}" for a, b in ranges)
    v = view(uids)
    largest = v.max_uid if by_uid else len(uids)
    wanted: set[int] = set()
    for a, b in ranges:
        a, b = largest if a is None else a, largest if b is None else b
        wanted.update(range(min(a, b), max(a, b) + 1))
    if by_uid:
        expect = [(i + 1, u) for i, u in enumerate(uids) if u in wanted]
    else:
        if not uids or max(wanted) > len(uids):
            with pytest.raises(BadSequence):
                v.resolve(parse_sequence_set(text), False)
            return
        expect = [(s, uids[s - 1]) for s in sorted(wanted)]
    assert v.resolve(parse_sequence_set(text), by_uid) == expect


def test_sixteen_thousand_ranges_over_a_big_mailbox_cost_no_more_than_one() -> None:
    """In a child process with a time limit (the old code made 16,000 x 20,000 set insertions)."""
    code = ("import time\n"
            "from mailsift.protocols.imap.mailboxview import MailboxView\n"
            "from mailsift.protocols.imap.parser import parse_command\n"
            "from mailsift.store.listing import MessageInfo\n"
            "HOSTILE = ','.join(['1:*'] * 16_000)\n"
            "v = MailboxView('INBOX', False, 1)\n"
            "v.load(MessageInfo(u, frozenset(), 0.0, 10, 1, str(u)) for u in range(1, 20_001))\n"
            "t = time.perf_counter()\n"
            "for uid in (False, True):\n"
            "    c = parse_command(('a %sFETCH %s FLAGS' % ('UID ' if uid else '', HOSTILE)).encode())\n"
            "    assert len(v.resolve(c.args['set'], uid)) == 20_000\n"
            "    c = parse_command(('a SEARCH %s' % HOSTILE).encode())\n"
            "    assert all(c.args['key'].args[0].contains(n, 20_000) for n in range(1, 20_001))\n"
            "print(time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 5.0, out.stdout


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imapseq-")


def test_a_hostile_sequence_set_through_the_server(srv) -> None:
    assert len(f"a FETCH {HOSTILE} (FLAGS)") < Limits().max_line
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    for i in range(3):
        append(w, "INBOX", msg(f"seq {i}"))
    w.command("SELECT INBOX")
    untagged, done = w.command(f"FETCH {HOSTILE} (FLAGS)")
    assert ok(done) and [u.split(b" FETCH")[0] for u in untagged] == [b"* 1", b"* 2", b"* 3"], untagged
    untagged, done = w.command(f"UID SEARCH {HOSTILE}")
    assert ok(done) and untagged == [b"* SEARCH 1 2 3"], untagged
    _, done = w.command(f"FETCH 1:4,{HOSTILE} (FLAGS)")  # beyond the mailbox: BAD as before
    assert b" BAD " in done, done
    w.close()
