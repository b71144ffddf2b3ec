"""The answer cache (protocols/imap/answercache.py): per folder, the HEADER.FIELDS answers of
listings. Bounded (estimated and traced memory), least recently used folder out first; through
the loader against a real store: a listing it answers reads nothing and answers byte for byte
as the header does; and through a real `mailsift serve` with two IMAP workers: never a stale
answer after another worker's expunge and APPEND (a new message under the same sequence
number), flag changes, or a folder deleted and created again."""

from __future__ import annotations

import gc
import re
import shutil
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness.procs import wait_for

from imap.conftest import ImapServer
from imap.test_workers import ALICE, ALICE_PW, pair_in_two_workers, worker_pids
from imap.wire import Wire, fetch_items
from mailsift.protocols.imap import fetch as fetchmod
from mailsift.protocols.imap.answercache import ENTRY_COST, MAP_COST, NAME_COST, AnswerCache
from mailsift.protocols.imap.headercache import HeaderCache
from mailsift.protocols.imap.loader import MessageLoader
from mailsift.protocols.imap.parser import parse_command
from mailsift.protocols.imap.sections import _memo_key
from mailsift.store.api import Store

LISTING = "UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]"
Q = _memo_key("HEADER.FIELDS", ("FROM", "SUBJECT", "DATE"))


def answer(i: int) -> bytes:
    body = (f"From: Sender {i} <sender{i}@example.org>\r\nSubject: a listing line of message {i}\r\n"
            f"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n").encode()
    return b"{%d}\r\n" % len(body) + body


# ----------------------------------------------------------------------------- the cache alone

def test_the_answer_cache_stays_within_its_bound_in_estimate_and_in_traced_memory() -> None:
    bound = 1024 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        cache = AnswerCache(bound)
        for folder in range(40):  # many folders, then one big one
            cache.put("u", f"F{folder}", 1, Q, [(uid, answer(uid)) for uid in range(1, 200)])
        cache.put("u", "Big", 1, Q, [(uid, answer(uid)) for uid in range(1, 20_000)])
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache._bytes <= bound
    assert 3000 < len(cache) < bound // (len(answer(1)) + ENTRY_COST) + 1
    assert used < 1.6 * bound, f"{used / bound:.2f} x the bound"


def test_questions_of_many_field_names_are_charged_for_them() -> None:
    """A client names the fields: one FETCH line may list thousands. Maps of such questions must
    stay within the bound in traced memory too."""
    bound = 1024 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        cache = AnswerCache(bound)
        for n in range(300):
            names = tuple(f"X-Field-Name-{n}-{i:05d}" for i in range(2000))
            cache.put("u", "INBOX", 1, _memo_key("HEADER.FIELDS", names), [(1, answer(1))])
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache._bytes <= bound and len(cache._maps) < 20
    assert used < 1.6 * bound, f"{used / bound:.2f} x the bound"
    # and a plan of a long field list asks the answer cache nothing at all
    names = " ".join(f"X-{i:05d}" for i in range(200))
    assert fetchmod.plan(list(parse_command(f"t FETCH 1 (BODY.PEEK[HEADER.FIELDS ({names})])".encode())
                              .args["atts"])).questions == ()


def test_the_least_recently_used_folder_goes_first_and_a_huge_one_keeps_what_fits() -> None:
    one = len(answer(1)) + ENTRY_COST
    cache = AnswerCache(3 * (MAP_COST + sum(len(name) + NAME_COST for name in Q[1]) + 10 * one))
    for name in ("A", "B", "C"):
        cache.put("u", name, 1, Q, [(uid, answer(uid)) for uid in range(10)])
    assert cache.maps("u", "A", 1, [Q])[0] is not None  # A used: B is now the oldest
    cache.put("u", "D", 1, Q, [(uid, answer(uid)) for uid in range(10)])
    assert [m is not None for m in (cache.maps("u", n, 1, [Q])[0] for n in "ABCD")] == [True, False, True, True]
    cache.put("u", "Huge", 1, Q, [(uid, answer(uid)) for uid in range(1000)])
    huge = cache.maps("u", "Huge", 1, [Q])[0]
    assert huge is not None and 20 < len(huge) < 40 and cache._bytes <= cache.max_bytes
    assert all(cache.maps("u", n, 1, [Q])[0] is None for n in "ACD")  # all made room for it
    assert huge == {uid: answer(uid) for uid in range(len(huge))}  # the first ones, whole


def test_answers_are_kept_apart_by_user_folder_uidvalidity_and_question() -> None:
    cache = AnswerCache()
    other_q = _memo_key("HEADER.FIELDS.NOT", ("FROM", "SUBJECT", "DATE"))
    cache.put("alice", "INBOX", 7, Q, [(1, b"{1}\r\na")])
    for user, folder, validity, q in (("bob", "INBOX", 7, Q), ("alice", "Sent", 7, Q),
                                      ("alice", "INBOX", 8, Q), ("alice", "INBOX", 7, other_q)):
        assert cache.maps(user, folder, validity, [q]) == [None]
    assert cache.maps("alice", "INBOX", 7, [Q]) == [{1: b"{1}\r\na"}]
    cache.put("alice", "INBOX", 7, Q, [(1, b"{1}\r\nb"), (2, b"x" * 5000)])  # kept; too big
    assert cache.maps("alice", "INBOX", 7, [Q]) == [{1: b"{1}\r\na"}]


# ----------------------------------------------------------------------- through the loader

USER = "alice@example.test"


@pytest.fixture
def box(tmp_path: Path):
    store = Store(tmp_path / "mail", hostname="test")
    mailbox = store.mailbox(USER)
    for i in range(1, 21):
        mailbox.deliver(f"From: s{i}@example.test\nSubject: m{i}\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
                        f"X-Other: {i}\n\nbody {i}\n".encode())
    yield mailbox
    store.close()


def listing(loader: MessageLoader, box, spec: str = LISTING, flags: frozenset[str] = frozenset()) -> list[bytes]:
    plan = fetchmod.plan(list(parse_command(f"t FETCH 1 ({spec})".encode()).args["atts"]))
    infos = box.list("INBOX")
    view = {i.uid: fetchmod.Info(i.uid, flags, i.internal_date, i.size, i.modseq, None) for i in infos}
    datas = fetchmod.datas_of(view, set(), [(n + 1, i.uid) for n, i in enumerate(infos)])
    got = loader.load("INBOX", box.status("INBOX").uidvalidity, datas, plan.headers_only, True, plan.questions)
    return [plan.line(n + 1, d, False) for n, d in enumerate(got)]


def test_a_listing_from_the_answer_cache_reads_nothing_and_answers_as_the_header(box, monkeypatch) -> None:
    cache = HeaderCache()
    loader = MessageLoader(box, USER, cache)
    spec = LISTING + ' BODY.PEEK[HEADER.FIELDS.NOT (X-Other Received)] RFC822.SIZE'
    first = listing(loader, box, spec)
    assert len(first) == 20 and b"Subject: m20" in first[-1]
    assert len(cache.answers) == 40  # two questions x 20 messages
    cache.clear()  # the whole headers gone (evicted): the answers must do
    monkeypatch.setattr(box, "read_nowait", lambda *a, **k: pytest.fail("read a file"))
    monkeypatch.setattr(box, "read", lambda *a, **k: pytest.fail("read a file"))
    assert listing(loader, box, spec) == first
    # the flags come from the view, not from what was cached
    seen = listing(loader, box, spec, frozenset({"\\Seen", "$Junk"}))
    assert seen == [line.replace(b"FLAGS ()", b"FLAGS (\\Seen $Junk)") for line in first]


def test_an_envelope_listing_from_the_answer_cache_reads_nothing_and_answers_as_the_message(box, monkeypatch) -> None:
    cache = HeaderCache()
    loader = MessageLoader(box, USER, cache)
    spec = "UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE"
    whole = []
    for info in box.list("INBOX"):  # the general path, from the whole message's MIME tree
        data = fetchmod.MessageData(info.uid, frozenset(), info.internal_date, info.size, info.modseq,
                                    raw=box.read("INBOX", info.uid))
        data.root  # noqa: B018  (parsed: ENVELOPE from the tree)
        whole.append(fetchmod.plan(list(parse_command(f"t FETCH 1 ({spec})".encode()).args["atts"]))
                     .line(len(whole) + 1, data, False))
    assert listing(loader, box, spec) == whole
    assert len(cache.answers) == 20
    cache.clear()
    monkeypatch.setattr(box, "read_nowait", lambda *a, **k: pytest.fail("read a file"))
    monkeypatch.setattr(box, "read", lambda *a, **k: pytest.fail("read a file"))
    assert listing(loader, box, spec) == whole


def test_a_plan_that_needs_more_than_field_answers_asks_none() -> None:
    def questions(spec: str) -> tuple:
        return fetchmod.plan(list(parse_command(f"t FETCH 1 ({spec})".encode()).args["atts"])).questions
    assert len(questions(LISTING)) == 1
    assert len(questions(LISTING + " BODY.PEEK[HEADER.FIELDS.NOT (DATE)] INTERNALDATE MODSEQ")) == 2
    assert len(questions("FLAGS INTERNALDATE RFC822.SIZE ENVELOPE")) == 1  # FETCH ALL
    assert len(questions(LISTING + " ENVELOPE")) == 2
    for spec in (LISTING + " RFC822.HEADER", LISTING + " BODY", LISTING + " BODY.PEEK[HEADER]",
                 "BODY.PEEK[HEADER.FIELDS (SUBJECT)]<0.10>", LISTING + " BODY.PEEK[1]", "UID FLAGS"):
        assert questions(spec) == (), spec


# --------------------------------------------------------- through a server with two workers

@pytest.fixture(scope="module")
def srv(mailsift_bin: str) -> Iterator[ImapServer]:
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-answers-"))
    server = ImapServer(mailsift_bin, workdir, {ALICE: ALICE_PW}, {"imap_workers": 2})
    server.start()
    wait_for(lambda: len(worker_pids(server)) == 2, 20, what="two imap workers")
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def append(w: Wire, folder: str, subject: str) -> int:
    data = f"From: a@example.test\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode()
    _, done = w.command(b"APPEND %s {%d+}\r\n" % (folder.encode(), len(data)) + data)
    assert ok(done), done
    return int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1))


def lines(w: Wire) -> list[tuple[int, int, set[str], str]]:
    """(seq, UID, flags, subject) of the folder, through the listing FETCH (the answer cache)."""
    untagged, done = w.command(f"FETCH 1:* ({LISTING})")
    assert ok(done), done
    out = []
    for u in untagged:
        if b" FETCH " in u:
            items = fetch_items(u)
            hdr = items["BODY[HEADER.FIELDS (FROM SUBJECT DATE)]"].decode()
            subject = re.search(r"Subject: (.*)\r\n", hdr).group(1)
            out.append((int(u.split()[1]), items["UID"], set(items["FLAGS"]) - {"\\Recent"}, subject))
    return out


def test_no_stale_answer_after_another_worker_expunges_appends_and_sets_flags(srv: ImapServer) -> None:
    a, b = pair_in_two_workers(srv)
    for w in (a, b):
        w.command("DELETE Answers")
    a.command("CREATE Answers")
    uids = [append(a, "Answers", f"first {i}") for i in range(1, 5)]
    a.command("SELECT Answers")
    b.command("SELECT Answers")
    want = [(i + 1, u, set(), f"first {i + 1}") for i, u in enumerate(uids)]
    assert lines(a) == want and lines(a) == want  # the second from A's worker's answer cache
    assert lines(b) == want
    for w in (a, b):
        w.command("FETCH 1:* (UID ENVELOPE)")
    # B (the other worker) expunges the last message and appends another: it takes number 4
    _, done = b.command("STORE 4 +FLAGS.SILENT (\\Deleted)")
    assert ok(done)
    _, done = b.command("EXPUNGE")
    assert ok(done)
    new = append(b, "Answers", "second 4")
    _, done = b.command("STORE 2 +FLAGS (\\Seen $Label)")
    assert ok(done)
    untagged, done = a.command("NOOP")
    assert ok(done) and b"* 4 EXPUNGE" in untagged and b"* 4 EXISTS" in untagged
    want = [(1, uids[0], set(), "first 1"), (2, uids[1], {"\\Seen", "$Label"}, "first 2"),
            (3, uids[2], set(), "first 3"), (4, new, set(), "second 4")]
    assert lines(a) == want and lines(b) == want
    for w in (a, b):  # ENVELOPE too comes from the answer cache in a listing
        untagged, done = w.command("FETCH 1:* (UID ENVELOPE)")
        assert ok(done)
        assert [(fetch_items(u)["UID"], fetch_items(u)["ENVELOPE"][1]) for u in untagged] == \
            [(x[1], x[3].encode()) for x in want]
    # a folder deleted and created again: the same UIDs, a new UIDVALIDITY, new answers
    a.command("CLOSE")
    b.command("CLOSE")
    _, done = a.command("DELETE Answers")
    assert ok(done), done
    a.command("CREATE Answers")
    again = [append(b, "Answers", f"third {i}") for i in range(1, 5)]
    assert again == uids  # the same UIDs as before the delete
    for w in (a, b):
        _, done = w.command("SELECT Answers")
        assert ok(done), done
        assert [x[3] for x in lines(w)] == [f"third {i}" for i in range(1, 5)]
    a.close()
    b.close()
