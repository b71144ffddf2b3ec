"""QRESYNC (RFC 7162): tombstones of expunged UIDs in the index (store/vanished.py), then the same
resynchronisation against a real `mailsift serve` and a private Dovecot 2.3: SELECT (QRESYNC
...) with and without known UIDs, a stale UIDVALIDITY, UID FETCH (CHANGEDSINCE n VANISHED),
VANISHED instead of EXPUNGE for this session's and another session's expunges, and BAD without
ENABLE QRESYNC. Responses are compared by UID sets and flags (MODSEQ values are each server's own)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from imap import dovecot_pair
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap.parser import ParseError, parse_command
from mailsift.protocols.imap.qresync import narrow
from mailsift.store import vanished
from mailsift.store.api import INBOX, Store

USER, PW = "resync@example.test", "resync-pw"


# -- the store's tombstones and the pure parts ---------------------------------------------------

def test_tombstones_tell_what_was_expunged_after_a_modseq(tmp_path: Path) -> None:
    s = Store(tmp_path / "m")
    box = s.mailbox(USER)
    for i in range(6):
        box.deliver(b"Subject: %d\r\n\r\nx\r\n" % i)
    box.store_flags(INBOX, [6], ["\\Deleted"])
    box.expunge(INBOX)                                   # before tombstones: only inexact answers
    box.track_expunges()
    uv = box.folder(INBOX).uidvalidity
    m0 = box.folder(INBOX).highestmodseq
    assert box.expunged_since(INBOX, uv, m0) == []
    assert box.expunged_since(INBOX, uv, m0 - 1) == [(6, 6)]   # older than the tombstones: the gaps
    box.store_flags(INBOX, [2, 3], ["\\Deleted"])
    box.expunge(INBOX)
    m1 = box.folder(INBOX).highestmodseq
    box.create_folder("Else")
    box.move(INBOX, [4], "Else")
    first = box.list(INBOX)[0]
    for p in box.path.glob(f"*/{first.key}*"):           # an outside program deletes uid 1
        p.unlink()
    box.list(INBOX)
    assert box.expunged_since(INBOX, uv, m0) == [(1, 4)]
    assert box.expunged_since(INBOX, uv, m1) == [(1, 1), (4, 4)]
    assert box.expunged_since(INBOX, uv, box.folder(INBOX).highestmodseq) == []
    s.close()


def test_tombstones_are_bounded_and_answers_stay_correct(tmp_path: Path) -> None:
    """More expunges than vanished.KEEP: the index keeps at most KEEP tombstones per folder; a
    MODSEQ the kept ones cover gets the exact answer, an older one every UID gone (RFC 7162
    allows naming more), never fewer than were expunged after it."""
    keep = vanished.KEEP
    s = Store(tmp_path / "m", hostname="test.host")
    box = s.mailbox(USER)
    box.track_expunges()
    box.create_folder("Big")
    cur = box.path / ".Big" / "cur"
    total = keep + 300
    for i in range(total):                  # outside files: the sync adopts them as UIDs 1..total
        (cur / f"{1_700_000_000 + i}.M{i}P1Q1.test.host:2,").write_bytes(b"Subject: %d\r\n\r\nx\r\n" % i)
    assert [m.uid for m in box.list("Big")] == list(range(1, total + 1))
    uv = box.folder("Big").uidvalidity
    gone: list[int] = []
    history = [(box.folder("Big").highestmodseq, 0)]   # (MODSEQ, how many of `gone` were gone then)

    def expunge(uids: list[int]) -> None:
        box.store_flags("Big", uids, ["\\Deleted"])
        assert box.expunge("Big", uids) == uids
        gone.extend(uids)
        history.append((box.folder("Big").highestmodseq, len(gone)))

    expunge(list(range(1, 101)))                        # one expunge of 100
    for lo in range(101, keep + 101, 1000):             # ten of 1,000
        expunge(list(range(lo, lo + 1000)))
    for uid in range(keep + 101, keep + 201):           # a hundred of one
        expunge([uid])
    for p in cur.glob(f"{1_700_000_000 + keep + 200}.*"):   # and one found by a sync
        p.unlink()
    box.list("Big")
    gone.append(keep + 201)
    history.append((box.folder("Big").highestmodseq, len(gone)))

    db = sqlite3.connect(box.path / "mailsift-index.sqlite3")
    fid = db.execute("SELECT id FROM folders WHERE name = 'Big'").fetchone()[0]
    kept = db.execute("SELECT count(*), min(modseq) FROM vanished WHERE folder_id = ?", (fid,)).fetchone()
    row = db.execute("SELECT modseq FROM vanished_since WHERE folder_id = ?", (fid,)).fetchone()
    floor = row[0] if row else 0                        # (no row: every expunge is kept)
    db.close()
    assert kept[0] <= keep and kept[1] > floor, (kept, floor)
    exact_from = 0
    for modseq, n in history:
        got = {u for lo, hi in box.expunged_since("Big", uv, modseq) for u in range(lo, hi + 1)}
        assert set(gone[n:]) <= got <= set(gone), modseq
        if modseq >= floor:
            assert got == set(gone[n:]), modseq
            exact_from = exact_from or n
        else:
            assert got == set(gone), modseq             # every gap below UIDNEXT
    # the last 100 single expunges and the sync's are answered exactly, the first ones are not
    assert 0 < exact_from <= len(gone) - 101
    s.close()


def test_narrowing_uid_ranges() -> None:
    from mailsift.protocols.imap.parser import parse_sequence_set as seqs
    assert narrow([(1, 10), (20, 30)], seqs("5:22,28"), 30) == [(5, 10), (20, 22), (28, 28)]
    assert narrow([(1, 4_000_000_000)], seqs("3,7:*"), 4_000_000_000) == [(3, 3), (7, 4_000_000_000)]
    assert narrow([(2, 3)], None, 3) == [(2, 3)]
    assert narrow([(1, 1), (3, 3), (5, 9)], seqs("9,1:3,2"), 9) == [(1, 1), (3, 3), (9, 9)]
    many = [(u, u) for u in range(1, 200_001, 2)]                         # 100,000 gaps
    assert len(narrow(many, seqs(",".join(f"{u}:{u + 1}" for u in range(1, 32_001, 4))), 200_000)) == 8000


def test_qresync_grammar() -> None:
    c = parse_command(b"a SELECT INBOX (QRESYNC (67890007 90060115194045000 41,43:211,214:541))")
    uv, modseq, known, match = c.args["qresync"]
    assert (uv, modseq, match) == (67890007, 90060115194045000, None) and known.contains(43, 541)
    c = parse_command(b"a UID FETCH 1:* FLAGS (CHANGEDSINCE 12 VANISHED)")
    assert c.args["vanished"] and c.args["changedsince"] == 12
    for bad in (b"a FETCH 1:* FLAGS (CHANGEDSINCE 12 VANISHED)", b"a SELECT x (QRESYNC (1))",
                b"a SELECT x (QRESYNC (0 5))", b"a SELECT x (QRESYNC (1 5 1:3 (1:3)))",
                b"a UID FETCH 1 FLAGS (VANISHED)"):
        with pytest.raises(ParseError):
            parse_command(bad)


# -- against Dovecot ----------------------------------------------------------------------------

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def servers(mailsift_bin: str):
    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-qresync-") as peers:
        yield peers


def summary(untagged: list[bytes], done: bytes) -> list[Any]:
    """Status word, VANISHED lines as they are, FETCH as (seq, UID, flags), EXPUNGE/EXISTS kept."""
    out: list[Any] = [re.match(rb"^\S+ (OK|NO|BAD)", done).group(1)]  # type: ignore[union-attr]
    for u in untagged:
        if u.startswith(b"* VANISHED") or re.match(rb"^\* \d+ (EXPUNGE|EXISTS)$", u) or u.startswith(b"* ENABLED"):
            out.append(u)
        elif b" FETCH " in u:
            it = fetch_items(u)
            out.append((int(u.split()[1]), it.get("UID"), sorted(f for f in it.get("FLAGS", []) if f != "\\Recent"),
                        "MODSEQ" in it))
    return out


def scenario(host: str, port: int) -> list[Any]:
    msg = b"Subject: q\r\n\r\nbody\r\n"
    w1, w2 = Wire(host, port), Wire(host, port)
    w1.login(USER, PW)
    w2.login(USER, PW)
    out: list[Any] = [summary(*w1.command("ENABLE QRESYNC"))]         # tombstones from here on
    w1.command("CREATE Resync")
    for _ in range(8):
        w1.command(b"APPEND Resync {%d+}\r\n" % len(msg) + msg)
    untagged, _ = w1.command("SELECT Resync")
    uv = int(next(re.search(rb"UIDVALIDITY (\d+)", u).group(1) for u in untagged if b"UIDVALIDITY" in u))
    w1.command("STORE 8 +FLAGS.SILENT (\\Deleted)")
    out.append(summary(*w1.command("EXPUNGE")))                         # VANISHED 8, not EXPUNGE
    untagged, _ = w1.command("STATUS Resync (HIGHESTMODSEQ)")  # (a STATUS of the selected folder)
    m0 = int(re.search(rb"HIGHESTMODSEQ (\d+)", untagged[0]).group(1))
    w1.command("STORE 2 +FLAGS.SILENT (\\Flagged)")
    w1.command("STORE 3,5 +FLAGS.SILENT (\\Deleted)")
    w1.command("EXPUNGE")
    w1.command(b"APPEND Resync {%d+}\r\n" % len(msg) + msg)             # uid 9
    # a client that knew the folder at m0 comes back
    out.append(summary(*w2.command(f"SELECT Resync (QRESYNC ({uv} {m0}))")))            # BAD: not enabled
    out.append(summary(*w2.command(f"UID FETCH 1:* FLAGS (CHANGEDSINCE {m0} VANISHED)")))  # BAD too
    out.append(summary(*w2.command("ENABLE QRESYNC")))
    out.append(summary(*w2.command(f"SELECT Resync (QRESYNC ({uv} {m0}))")))
    out.append(summary(*w2.command(f"EXAMINE Resync (QRESYNC ({uv} {m0} 1:4))")))
    out.append(summary(*w2.command(f"SELECT Resync (QRESYNC ({uv + 1} {m0}))")))       # stale UIDVALIDITY
    out.append(summary(*w2.command(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {m0} VANISHED)")))
    out.append(summary(*w2.command(f"UID FETCH 4:6 (FLAGS) (CHANGEDSINCE {m0} VANISHED)")))
    # another session's expunge reaches this one as VANISHED
    w1.command("STORE 1 +FLAGS.SILENT (\\Deleted)")
    w1.command("EXPUNGE")
    out.append(summary(*w2.command("NOOP")))
    out.append(summary(*w2.command("STORE 2 FLAGS (\\Seen)")))           # UID in flag changes once enabled
    out.append(summary(*w2.command("FETCH 2 (FLAGS)")))                  # (not in a FETCH asked for)
    w2.command("UID STORE 6 +FLAGS.SILENT (\\Deleted)")
    out.append(summary(*w2.command("UID EXPUNGE 6")))
    w1.close()
    w2.close()
    return out


def test_resynchronisation_agrees_with_dovecot(servers) -> None:
    ours, dc = servers
    a = scenario(ours.host, ours.imap_port)
    b = scenario(dc.host, dc.imap_port)
    assert a == b, "\n".join(f"ours {x}\ndovecot {y}" for x, y in zip(a, b) if x != y)
    # and the answers are the expected ones, not only equal
    assert a[1] == [b"OK", b"* VANISHED 8"]
    assert a[5][:3] == [b"OK", b"* 6 EXISTS", b"* VANISHED (EARLIER) 3,5"]
    assert [x for x in a[5] if isinstance(x, tuple)] == [(2, 2, ["\\Flagged"], True), (6, 9, [], True)]
    assert a[6] == [b"OK", b"* 6 EXISTS", b"* VANISHED (EARLIER) 3", (2, 2, ["\\Flagged"], True)]
    assert a[7] == [b"OK", b"* 6 EXISTS"]                                 # stale UIDVALIDITY: nothing
    assert a[9][1:] == [b"* VANISHED (EARLIER) 5"]
    assert a[10] == [b"OK", b"* VANISHED 1"] and a[13] == [b"OK", b"* VANISHED 6"]
    assert a[11] == [b"OK", (2, 4, ["\\Seen"], True)] and a[12] == [b"OK", (2, None, ["\\Seen"], False)]
