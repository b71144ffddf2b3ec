"""The caches behind IMAP must never serve stale data: the process-wide header cache
(protocols/imap/headercache.py, keyed by user, folder, UIDVALIDITY, UID) and the store's folder
listing cache (what SELECT, NOOP and every refresh read). Through a real `mailsift serve` (IMAP +
LMTP on loopback): changes made by another session, by LMTP delivery, by renames, deletions and
re-creations, and by an outside program writing the Maildir; plus the header cache's bounds."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from imap.wire import Wire, fetch_items
from mailsift.protocols.imap import headercache as _hc
from mailsift.protocols.imap.headercache import MAX_HEADER, HeaderCache, _cost, header_part

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "alice@example.test", "bob@example.test", "carol@example.test"
PASSWORDS = {ALICE: "alice-pw", BOB: "bob-pw", CAROL: "carol-pw"}
SAME_UIDVALIDITY = 4_000_000_000  # alice's and bob's folders are given equal UIDVALIDITYs


@pytest.fixture(scope="module", params=[2, 0], ids=["imap_workers=2", "imap_workers=0"])
def srv(mailsift_bin, request):
    """Both ways `mailsift serve` answers IMAP: in two worker processes (each with its own
    caches; connections spread over them by the kernel) and in the main process."""
    from imap.conftest import ImapServer
    workdir = Path(tempfile.mkdtemp(prefix="mailsift-imapcache-"))
    server = ImapServer(mailsift_bin, workdir, PASSWORDS, {"imap_workers": request.param})
    # Two users whose folders get the same UIDVALIDITY (a time-based value two mailboxes made
    # in the same second share anyway) and so the same (folder, UIDVALIDITY, UID) triples.
    for user in (ALICE, BOB):
        local, domain = user.split("@")
        home = server.mail_root / domain / local
        home.mkdir(parents=True)
        (home / "mailsift-uidvalidity").write_text(f"{SAME_UIDVALIDITY - 1}\n")
    server.start()
    yield server
    server.stop()
    log = server.log()
    shutil.rmtree(workdir, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]


def connect(srv, user: str = CAROL) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(user, PASSWORDS[user])
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def msg(subject: str, body: str = "body\r\n", to: str = CAROL) -> bytes:
    return (f"From: Sender <sender@example.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash(subject))}@example.test>\r\n\r\n{body}").encode()


def append(w: Wire, folder: str, data: bytes, flags: str = "") -> int:
    _, done = w.command(f"APPEND {folder} {'(' + flags + ') ' if flags else ''}".encode()
                        + b"{%d+}\r\n" % len(data) + data)
    assert ok(done), done
    return int(re.search(rb"APPENDUID \d+ (\d+)", done).group(1))


def fresh_folder(w: Wire, name: str) -> None:
    w.command(f"DELETE {name}")
    _, done = w.command(f"CREATE {name}")
    assert ok(done), done


def subjects(w: Wire, seqs: str = "1:*", uid: bool = False) -> dict[int, str]:
    """{UID: Subject} from a header-only FETCH (the header cache's path)."""
    untagged, done = w.command(f"{'UID ' if uid else ''}FETCH {seqs} (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert ok(done), done
    out = {}
    for u in untagged:
        if b" FETCH " not in u:
            continue
        items = fetch_items(u)
        hdr = items["BODY[HEADER.FIELDS (SUBJECT)]"].decode()
        out[items["UID"]] = hdr.split(":", 1)[1].strip() if ":" in hdr else ""
    return out


def flags_of(w: Wire) -> dict[int, set[str]]:
    untagged, done = w.command("UID FETCH 1:* (FLAGS)")
    assert ok(done), done
    return {fetch_items(u)["UID"]: {f for f in fetch_items(u)["FLAGS"] if f != "\\Recent"}
            for u in untagged if b" FETCH " in u}


def uidvalidity(untagged: list[bytes]) -> int:
    return int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(untagged)).group(1))


def maildir(srv, user: str, folder: str = "INBOX") -> Path:
    local, domain = user.split("@")
    home = srv.mail_root / domain / local
    return home if folder == "INBOX" else home / f".{folder}"


# --------------------------------------------------------------------------- header cache

def test_two_users_with_the_same_uidvalidity_and_uid_see_their_own_headers(srv) -> None:
    a, b = connect(srv, ALICE), connect(srv, BOB)
    append(a, "INBOX", msg("alice private", to=ALICE))
    append(b, "INBOX", msg("bob private", to=BOB))
    ua, _ = a.command("SELECT INBOX")
    ub, _ = b.command("SELECT INBOX")
    assert uidvalidity(ua) == uidvalidity(ub) >= SAME_UIDVALIDITY  # same (folder, UIDVALIDITY, UID)
    assert subjects(a) == {1: "alice private"}
    assert subjects(b) == {1: "bob private"}
    a.close()
    b.close()
    for user, want in ((BOB, "bob private"), (ALICE, "alice private")):  # new sessions: cache hits
        w = connect(srv, user)
        w.command("EXAMINE INBOX")
        assert subjects(w) == {1: want}
        untagged, _ = w.command("FETCH 1 (RFC822.HEADER)")
        assert want.encode() in fetch_items(untagged[0])["RFC822.HEADER"]
        w.close()


def test_flags_fetched_with_cached_headers_are_current(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "FlagHdr")
    for i in range(3):
        append(a, "FlagHdr", msg(f"fh{i}"))
    a.command("SELECT FlagHdr")
    b.command("SELECT FlagHdr")
    assert subjects(a) == {1: "fh0", 2: "fh1", 3: "fh2"}  # now cached
    b.command("STORE 2 +FLAGS (\\Seen $Junk)")
    b.command("STORE 3 +FLAGS (NonJunk)")               # a keyword only: no Maildir rename
    untagged, _ = a.command("FETCH 1:3 (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    got = {}
    for u in untagged:
        items = fetch_items(u)
        if "BODY[HEADER.FIELDS (SUBJECT)]" in items:
            got[items["UID"]] = (set(items["FLAGS"]) - {"\\Recent"},
                                 items["BODY[HEADER.FIELDS (SUBJECT)]"].split(b":", 1)[1].strip())
    assert got == {1: (set(), b"fh0"), 2: ({"\\Seen", "$Junk"}, b"fh1"), 3: ({"NonJunk"}, b"fh2")}
    a.close()
    b.close()


def test_swapped_folder_names_show_the_right_headers_to_new_sessions(srv) -> None:
    w = connect(srv)
    for name in ("SwapP", "SwapQ", "SwapT"):
        w.command(f"DELETE {name}")
    for name in ("SwapP", "SwapQ"):
        w.command(f"CREATE {name}")
        append(w, name, msg(f"{name} first"))
        append(w, name, msg(f"{name} second"))
    uv = {}
    for name in ("SwapP", "SwapQ"):
        untagged, _ = w.command(f"EXAMINE {name}")
        uv[name] = uidvalidity(untagged)
        assert subjects(w) == {1: f"{name} first", 2: f"{name} second"}
    w.close()
    w = connect(srv)
    for old, new in (("SwapP", "SwapT"), ("SwapQ", "SwapP"), ("SwapT", "SwapQ")):
        _, done = w.command(f"RENAME {old} {new}")
        assert ok(done), done
    w.close()
    for name, was in (("SwapP", "SwapQ"), ("SwapQ", "SwapP")):
        w = connect(srv)
        untagged, _ = w.command(f"EXAMINE {name}")
        assert uidvalidity(untagged) == uv[was]  # a rename keeps UIDVALIDITY and UIDs
        assert subjects(w) == {1: f"{was} first", 2: f"{was} second"}
        w.close()


def test_a_folder_deleted_and_created_again_shows_its_new_messages(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Reborn")
    append(w, "Reborn", msg("before delete"))
    untagged, _ = w.command("EXAMINE Reborn")
    before = uidvalidity(untagged)
    assert subjects(w) == {1: "before delete"}
    w.close()
    w = connect(srv)
    fresh_folder(w, "Reborn")
    append(w, "Reborn", msg("after delete"))
    w.close()
    w = connect(srv)
    untagged, _ = w.command("EXAMINE Reborn")
    assert uidvalidity(untagged) > before
    assert subjects(w) == {1: "after delete"}
    untagged, _ = w.command("FETCH 1 (BODY.PEEK[HEADER])")
    assert b"after delete" in fetch_items(untagged[0])["BODY[HEADER]"]
    w.close()


def test_headers_of_an_expunged_message_are_not_served_and_the_rest_are_right(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "Gone")
    uids = [append(a, "Gone", msg(f"g{i}")) for i in range(4)]
    a.command("SELECT Gone")
    b.command("SELECT Gone")
    assert subjects(a) == {u: f"g{i}" for i, u in enumerate(uids)}
    b.command(f"UID STORE {uids[1]} +FLAGS.SILENT (\\Deleted)")
    _, done = b.command("EXPUNGE")
    assert ok(done)
    # a FETCH by sequence number may not report the EXPUNGE; the message stays addressable
    untagged, done = a.command("FETCH 1:4 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert not any(b"EXPUNGE" in u for u in untagged)
    fetched = {fetch_items(u)["UID"]: fetch_items(u) for u in untagged if b" FETCH " in u}
    for i in (0, 2, 3):
        assert fetched[uids[i]]["BODY[HEADER.FIELDS (SUBJECT)]"].strip() == f"Subject: g{i}".encode()
    if uids[1] not in fetched:
        assert b"NO [EXPUNGEISSUED]" in done, done
    # UID FETCH may, and does: the EXPUNGE comes first and nothing for the expunged UID
    untagged, done = a.command(f"UID FETCH {uids[1]} (UID BODY.PEEK[HEADER])")
    assert ok(done) and b"* 2 EXPUNGE" in untagged
    assert not any(b" FETCH " in u for u in untagged)
    assert subjects(a) == {uids[0]: "g0", uids[2]: "g2", uids[3]: "g3"}
    a.close()
    b.close()


def test_a_message_an_outside_program_replaced_shows_its_new_headers(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Edited")
    append(w, "Edited", msg("keep"))
    uid = append(w, "Edited", msg("draft one"))
    w.command("SELECT Edited")
    assert subjects(w) == {1: "keep", uid: "draft one"}
    untagged, _ = w.command(f"UID FETCH {uid} (BODY.PEEK[])")
    assert b"draft one" in fetch_items(untagged[0])["BODY[]"]
    # an editor (mutt's edit-message) writes the new text under a new name, removes the old file
    d = maildir(srv, CAROL, "Edited")
    [old] = [n for n in os.listdir(d / "cur") if b"draft one" in (d / "cur" / n).read_bytes()]
    (d / "tmp" / "1800000000.edit.host").write_bytes(b"Subject: draft two\nTo: carol@example.test\n\nnew\n")
    os.rename(d / "tmp" / "1800000000.edit.host", d / "cur" / "1800000000.edit.host:2,S")
    os.unlink(d / "cur" / old)
    untagged, _ = w.command("NOOP")
    assert b"* 2 EXPUNGE" in untagged and b"* 2 EXISTS" in untagged
    got = subjects(w)
    assert list(got.values()) == ["keep", "draft two"] and uid not in got
    untagged, _ = w.command("FETCH 2 (FLAGS BODY.PEEK[])")
    items = fetch_items(untagged[0])
    assert items["BODY[]"].endswith(b"\r\n\r\nnew\r\n") and "\\Seen" in items["FLAGS"]
    w.close()


# --------------------------------------------------------------------------- listing cache

def test_changes_by_another_session_reach_a_selected_session(srv) -> None:
    a, b = connect(srv), connect(srv)
    fresh_folder(a, "Listing")
    fresh_folder(a, "ListingOut")
    uids = [append(a, "Listing", msg(f"l{i}")) for i in range(5)]
    a.command("SELECT Listing")
    b.command("SELECT Listing")
    assert flags_of(a) == {u: set() for u in uids}
    b.command(f"UID STORE {uids[0]} +FLAGS (\\Answered)")
    b.command(f"UID STORE {uids[1]} +FLAGS (Custom$Kw)")
    b.command(f"UID MOVE {uids[2]} ListingOut")
    new = append(b, "Listing", msg("l-new"), "\\Flagged")
    untagged, _ = a.command("NOOP")
    text = b"\n".join(untagged)
    assert b"* 3 EXPUNGE" in text and b"* 5 EXISTS" in text
    assert re.search(rb"\* 1 FETCH \(.*\\Answered", text) and re.search(rb"\* 2 FETCH \(.*Custom\$Kw", text)
    assert flags_of(a) == {uids[0]: {"\\Answered"}, uids[1]: {"Custom$Kw"}, uids[3]: set(), uids[4]: set(),
                           new: {"\\Flagged"}}
    assert flags_of(a) == flags_of(b)
    untagged, _ = a.command("STATUS ListingOut (MESSAGES UIDNEXT)")
    assert untagged[0].endswith(b"(MESSAGES 1 UIDNEXT 2)")
    a.close()
    b.close()


def test_an_lmtp_delivery_reaches_select_noop_and_status(srv) -> None:
    a = connect(srv)
    a.command("SELECT INBOX")
    before = len(flags_of(a))
    other = connect(srv)
    untagged, _ = other.command("STATUS INBOX (MESSAGES)")
    assert untagged[0].endswith(b"(MESSAGES %d)" % before)
    srv.deliver(CAROL, msg("via lmtp"))
    untagged, _ = a.command("NOOP")
    assert b"* %d EXISTS" % (before + 1) in untagged
    assert list(subjects(a, f"{before + 1}").values()) == ["via lmtp"]
    untagged, _ = other.command("STATUS INBOX (MESSAGES)")
    assert untagged[0].endswith(b"(MESSAGES %d)" % (before + 1))
    untagged, _ = other.command("SELECT INBOX")
    assert b"* %d EXISTS" % (before + 1) in untagged
    a.close()
    other.close()


def test_mutt_changing_flags_and_an_outside_mda_delivering_reach_a_selected_session(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Outside")
    uids = [append(w, "Outside", msg(f"o{i}")) for i in range(3)]
    w.command("SELECT Outside")
    assert flags_of(w) == {u: set() for u in uids}
    d = maildir(srv, CAROL, "Outside")
    [first] = [n for n in os.listdir(d / "cur") if b"Subject: o0" in (d / "cur" / n).read_bytes()]
    os.rename(d / "cur" / first, d / "cur" / f"{first.split(':2,')[0]}:2,FS")  # mutt flags and reads it
    (d / "tmp" / "1800000001.mda.host").write_bytes(b"Subject: from procmail\n\nhi\n")
    os.rename(d / "tmp" / "1800000001.mda.host", d / "new" / "1800000001.mda.host")
    untagged, _ = w.command("NOOP")
    text = b"\n".join(untagged)
    assert b"* 4 EXISTS" in text and re.search(rb"\* 1 FETCH \(.*\\Flagged", text)
    got = flags_of(w)
    assert got[uids[0]] == {"\\Flagged", "\\Seen"} and len(got) == 4
    assert list(subjects(w, "4").values()) == ["from procmail"]
    w.close()


def test_a_deletion_another_process_synced_first_is_reported(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "Synced")
    for i in range(3):
        append(w, "Synced", msg(f"s{i}"))
    w.command("SELECT Synced")
    d = maildir(srv, CAROL, "Synced")
    [victim] = [n for n in os.listdir(d / "cur") if b"Subject: s1" in (d / "cur" / n).read_bytes()]
    os.unlink(d / "cur" / victim)                    # mutt deletes message 2
    # another process opens the mailbox (an IMAP worker, or `mailsift user add` re-adding a
    # user whose Maildir was kept) and syncs the folder before the selected session looks
    subprocess.run([sys.executable, "-c",
                    "import sys; from mailsift.store.api import Store; "
                    "Store(sys.argv[1]).mailbox(sys.argv[2]).list('Synced')",
                    str(srv.mail_root), CAROL], check=True)
    noop, _ = w.command("NOOP")
    assert b"* 2 EXPUNGE" in noop, noop
    assert list(subjects(w).values()) == ["s0", "s2"]
    w.close()


# --------------------------------------------------------------------------- header cache, unit

def _part(subject: str, pad: int = 0):
    return header_part(b"Subject: " + subject.encode() + b"\r\nX-Pad: " + b"p" * pad + b"\r\n\r\nbody\r\n")


def test_header_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    one = _part("x", 100)
    cost = _cost(one)
    cache = HeaderCache(max_bytes=3 * cost)
    for uid in (1, 2, 3):
        cache.put(("u", "INBOX", 9, uid), _part("x", 100))
    assert len(cache) == 3
    assert cache.get(("u", "INBOX", 9, 1)) is not None       # 1 is now the most recent
    cache.put(("u", "INBOX", 9, 4), _part("x", 100))         # over the bound: 2 goes
    assert cache.get(("u", "INBOX", 9, 2)) is None
    assert all(cache.get(("u", "INBOX", 9, u)) is not None for u in (1, 3, 4))
    assert cache._bytes <= cache.max_bytes
    # the same key again replaces, without counting twice
    for _ in range(10):
        cache.put(("u", "INBOX", 9, 4), _part("y", 100))
    assert len(cache) == 3 and cache._bytes == 3 * cost
    assert cache.get(("u", "INBOX", 9, 4)).data.startswith(b"Subject: y")
    # a header over MAX_HEADER is not kept; a single entry over the bound is not kept either
    cache.put(("u", "INBOX", 9, 5), _part("big", MAX_HEADER))
    assert cache.get(("u", "INBOX", 9, 5)) is None
    small = HeaderCache(max_bytes=cost - 1)
    small.put(("u", "INBOX", 9, 1), _part("x", 100))
    assert len(small) == 0 and small._bytes == 0


def test_header_cache_keeps_only_the_header() -> None:
    raw = b"Subject: hello\r\nFrom: a@example.test\r\n\r\n" + b"body line\r\n" * 10_000
    part = header_part(raw)
    assert part.data == b"Subject: hello\r\nFrom: a@example.test\r\n\r\n"
    assert _cost(part) < 2_000


def test_header_cache_under_threads_stays_within_its_bound() -> None:
    cost = _cost(_part("x", 50))
    cache = HeaderCache(max_bytes=50 * cost)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2_000):
                key = ("u%d" % n, "INBOX", 1, i % 120)
                cache.put(key, _part("x", 50))
                got = cache.get(("u%d" % n, "INBOX", 1, (i * 7) % 120))
                assert got is None or got.data.startswith(b"Subject: x")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50 and cache._bytes == len(cache) * cost <= cache.max_bytes


# ------------------------------------------- header cache hit == the full message, byte for byte

EDGES = Path(__file__).resolve().parent.parent / "data" / "imap_edges"
ODD_MIME = Path(__file__).resolve().parent.parent / "data" / "imap"
HEADER_FETCHES = [
    "BODY.PEEK[HEADER]",
    "RFC822.HEADER",
    "BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID CONTENT-TYPE RECEIVED X-EMPTY X-NONE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED SUBJECT X-FILLER-00001)]",
    "BODY.PEEK[HEADER]<0.20>",
    "BODY.PEEK[HEADER.FIELDS (SUBJECT)]<3.7>",
    "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)]",
]


def _samples(corpora_dir: Path | None) -> list[tuple[str, bytes]]:
    out = [(p.name, p.read_bytes()) for p in sorted(EDGES.glob("*.eml")) + sorted(ODD_MIME.glob("*.eml"))]
    if corpora_dir is not None:  # a spread of real mail: every 40th message of each corpus
        for sub in sorted(d for d in corpora_dir.glob("*/*") if d.is_dir()):
            files = sorted(p for p in sub.iterdir() if p.is_file())
            out += [(str(p.relative_to(corpora_dir)), p.read_bytes()) for p in files[::40]]
    return out


def test_a_header_cache_hit_answers_exactly_as_the_full_message(corpora) -> None:
    """A hit answers from header_part(raw) alone; a miss (and every other FETCH) from the whole
    message: for every header-only FETCH the bytes must be the same."""
    from mailsift.protocols.imap import fetch as fetchmod
    from mailsift.protocols.imap.mimetree import to_crlf
    from mailsift.protocols.imap.parser import parse_command

    samples = _samples(corpora)
    assert len(samples) > 200
    checked = 0
    for spec in HEADER_FETCHES:
        atts = parse_command(f"t FETCH 1 ({spec})".encode()).args["atts"]
        assert fetchmod.header_only(atts), spec
        for name, data in samples:
            raw = to_crlf(data)
            flags = frozenset({"\\Seen", "$Junk"})
            full = fetchmod.MessageData(7, flags, 1.6e9, len(raw), 3, raw=raw)
            hit = fetchmod.MessageData(7, flags, 1.6e9, len(raw), 3)
            hit._top = _hc.header_part(raw)
            hit.header_only = True
            want = fetchmod.fetch_items(full, atts, recent=True, with_uid=True)
            got = fetchmod.fetch_items(hit, atts, recent=True, with_uid=True)
            assert got == want, (name, spec, got[:300], want[:300])
            checked += 1
    assert checked == len(HEADER_FETCHES) * len(samples)


def test_header_cache_memory_stays_near_its_bound_even_for_headers_of_tiny_fields() -> None:
    """The bound is on estimated bytes (_cost); what the entries really take must stay close to
    it, also for the worst case (a 60 KB header of thousands of tiny fields: the parsed field
    objects dwarf the header bytes)."""
    import gc
    import tracemalloc
    tiny = b"".join(b"X%d: y\r\n" % i for i in range(7000))
    tiny = tiny[:tiny.rfind(b"\r\n", 0, MAX_HEADER - 200) + 2] + b"\r\nbody\r\n"
    typical = (b"Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.test; "
               b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" * 5 + b"From: a@example.org\r\nTo: b@example.test\r\n"
               b"Subject: hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n")
    for raw, count in ((tiny, 6), (typical, 800)):
        assert len(header_part(raw).data) <= MAX_HEADER  # cacheable
        bound = 2 * 1024 * 1024
        gc.collect()
        tracemalloc.start()
        try:
            cache = HeaderCache(max_bytes=bound)
            for uid in range(count):
                cache.put(("u", "INBOX", 1, uid), header_part(raw))
            gc.collect()
            used, _peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert cache._bytes <= bound and len(cache) < count  # it did fill up and evict
        assert used < 1.6 * bound, (len(raw), used, bound)
