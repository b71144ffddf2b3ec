"""The FETCH rendering plan (fetch.Plan: one bytes formatting per message, plans kept per
attribute list) and the loader's batch path (header cache hits under one lock, the inline read
budget, headers of messages the session already holds whole), against a real store in a
temporary mail root. The answers themselves are compared with Dovecot's elsewhere
(test_dovecot_differential.py); here: that the fast paths answer byte for byte what the
general one does, and that what they keep is bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsift.protocols.imap import fetch as fetchmod
from mailsift.protocols.imap import loader as loadermod
from mailsift.protocols.imap.headercache import HeaderCache
from mailsift.protocols.imap.loader import MessageLoader, WouldBlock
from mailsift.protocols.imap.mimetree import to_crlf
from mailsift.protocols.imap.parser import parse_command
from mailsift.store.api import Store

USER = "alice@example.test"


def atts_of(spec: str) -> list:
    return list(parse_command(f"t FETCH 1 ({spec})".encode()).args["atts"])


def message(i: int, filler: int = 0) -> bytes:
    return (f"From: Sender {i} <s{i}@example.test>\nTo: {USER}\nSubject: message {i}\n"
            f"Date: Mon, 1 Jan 2024 00:00:{i % 60:02d} +0000\nX-Percent: 100% %d %s\n"
            f"Message-ID: <{i}@example.test>\n\nbody {i}\n" + "x" * filler + "\n").encode()


@pytest.fixture
def box(tmp_path: Path):
    store = Store(tmp_path / "mail", hostname="test")
    mailbox = store.mailbox(USER)
    for i in range(1, 11):
        mailbox.deliver(message(i))
    yield mailbox
    store.close()


def reference(msg: fetchmod.MessageData, atts: list, recent: bool, with_uid: bool) -> bytes:
    """What a FETCH answers, item by item through fetch._value (the general path), without a plan."""
    seen: set[str] = set()
    if with_uid and not any(a.name == "UID" for a in atts):
        atts = [fetchmod.FetchAtt("UID")] + atts
    parts = []
    for a in atts:
        name = a.response_name()
        if name in seen:
            continue
        seen.add(name)
        parts.append(name.encode() + b" " + fetchmod._value(msg, a, recent))
    return b"(" + b" ".join(parts) + b")"


SPECS = [
    "UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]",
    "BODY.PEEK[HEADER.FIELDS.NOT (RECEIVED SUBJECT)] RFC822.SIZE",
    'BODY.PEEK[HEADER.FIELDS ("X-Percent" "%d")] FLAGS',  # % in a name: never a format directive
    "BODY.PEEK[]",
    "BODY.PEEK[]<3.20>",
    "BODY[HEADER] BODY.PEEK[HEADER] RFC822.HEADER",
    "FLAGS INTERNALDATE RFC822.SIZE ENVELOPE UID",
    "BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[TEXT]<2.5> RFC822.SIZE FLAGS UID",
]


@pytest.mark.parametrize("spec", SPECS)
def test_a_planned_line_is_the_general_answer_byte_for_byte(box, spec: str) -> None:
    atts = atts_of(spec)
    for info in box.list("INBOX"):
        raw = box.read("INBOX", info.uid)
        for recent in (False, True):
            msg = fetchmod.MessageData(info.uid, frozenset({"\\Seen", "$Kw"}), info.internal_date, info.size,
                                       7, raw=raw)
            want = reference(fetchmod.MessageData(info.uid, msg.flags, info.internal_date, info.size, 7, raw=raw),
                             atts, recent, with_uid=True)
            line = fetchmod.plan(atts, True).line(info.uid + 100, msg, recent)
            assert line == b"* %d FETCH " % (info.uid + 100) + want + b"\r\n"
            assert fetchmod.fetch_items(msg, atts, recent, with_uid=True) == want


def test_percent_in_a_field_name_is_answered_as_written(box) -> None:
    info = box.list("INBOX")[0]
    msg = fetchmod.MessageData(info.uid, frozenset(), info.internal_date, info.size, raw=box.read("INBOX", info.uid))
    got = fetchmod.fetch_items(msg, atts_of('BODY.PEEK[HEADER.FIELDS ("X-Percent")]'))
    assert got == b'(BODY[HEADER.FIELDS ("X-Percent")] {25}\r\nX-Percent: 100% %d %s\r\n\r\n)'


def test_plans_kept_are_bounded_in_number_and_size() -> None:
    fetchmod._PLANS.clear()
    for i in range(3 * fetchmod._MAX_PLANS):
        fetchmod.plan(atts_of(f"UID BODY.PEEK[HEADER.FIELDS (X-F{i})]"))
        assert len(fetchmod._PLANS) <= fetchmod._MAX_PLANS
    fetchmod._PLANS.clear()
    names = " ".join(f"X-LONG-FIELD-NAME-{i:05d}" for i in range(100))  # a 2.4 KB section spec
    p = fetchmod.plan(atts_of(f"BODY.PEEK[HEADER.FIELDS ({names})]"))
    assert not fetchmod._PLANS and p.headers_only
    q = fetchmod.plan(atts_of("UID FLAGS"))
    assert fetchmod.plan(atts_of("UID FLAGS")) is q and len(fetchmod._PLANS) == 1


def test_a_plan_tells_what_the_command_needs() -> None:
    listing = fetchmod.plan(atts_of("UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]"))
    assert listing.need_data and listing.headers_only and not listing.tree
    body = fetchmod.plan(atts_of("BODY.PEEK[]"))
    assert body.need_data and not body.headers_only and not body.tree
    structure = fetchmod.plan(atts_of("UID BODYSTRUCTURE"))
    assert structure.need_data and structure.tree and not structure.headers_only
    flags = fetchmod.plan(atts_of("UID FLAGS"))
    assert not flags.need_data and not flags.headers_only and not flags.tree


# ------------------------------------------------------------------------- the loader's batches

def datas(box, uids: list[int]) -> list[fetchmod.MessageData]:
    view = {i.uid: i for i in box.list("INBOX")}
    return fetchmod.datas_of(view, set(), [(u, u) for u in uids])


def listing_lines(loader: MessageLoader, box, uids: list[int], inline: bool = True) -> list[bytes]:
    p = fetchmod.plan(atts_of("UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]"))
    uidvalidity = box.status("INBOX").uidvalidity
    got = loader.load("INBOX", uidvalidity, datas(box, uids), True, inline=inline)
    return [p.line(d.uid, d, False) for d in got]


def test_a_listing_answers_alike_from_files_the_header_cache_and_the_parsed_cache(box) -> None:
    uids = [i.uid for i in box.list("INBOX")]
    fresh = listing_lines(MessageLoader(box, USER, HeaderCache()), box, uids)
    assert len(fresh) == 10 and all(b"Subject: message" in line for line in fresh)
    cache = HeaderCache()
    loader = MessageLoader(box, USER, cache)
    uidvalidity = box.status("INBOX").uidvalidity
    whole = loader.load("INBOX", uidvalidity, datas(box, uids[2:5]), False, inline=True)  # BODY.PEEK[] of three
    assert all(d.raw is not None for d in whole) and len(cache) == 0
    assert listing_lines(loader, box, uids) == fresh  # three from the parsed cache, seven read
    assert len(cache) == 10  # the three held whole went into the header cache too
    assert listing_lines(loader, box, uids) == fresh  # all ten from the header cache
    for d in loader.load("INBOX", uidvalidity, datas(box, uids), True, inline=True):
        assert d.raw is None and d._top is not None  # not one file read


def test_the_inline_budget_is_checked_before_anything_is_read(box, monkeypatch) -> None:
    big = [box.deliver(message(100 + i, filler=60_000)) for i in range(6)]
    assert big
    uids = [i.uid for i in box.list("INBOX")][-6:]
    loader = MessageLoader(box, USER, HeaderCache())
    reads: list[int] = []
    real = box.read_nowait
    monkeypatch.setattr(box, "read_nowait", lambda folder, uid: reads.append(uid) or real(folder, uid))
    uidvalidity = box.status("INBOX").uidvalidity
    assert sum(d.size for d in datas(box, uids)) > loadermod.INLINE_READ_BYTES
    with pytest.raises(WouldBlock):
        loader.load("INBOX", uidvalidity, datas(box, uids), True, inline=True)
    assert reads == []
    got = loader.load("INBOX", uidvalidity, datas(box, uids), True)  # (in a worker thread)
    assert all(d._top is not None and b"Subject: message 10" in d._top.data for d in got)
    # now every header is cached: the same listing costs no read and may run inline
    got = loader.load("INBOX", uidvalidity, datas(box, uids), True, inline=True)
    assert reads == [] and len(got) == 6


def test_a_header_cache_entry_of_an_expunged_uid_is_not_served_for_a_new_folder(box) -> None:
    """The loader's keys: a folder deleted and created again gets a new UIDVALIDITY, so a listing
    of its messages (same UIDs) never meets the old folder's headers."""
    cache = HeaderCache()
    loader = MessageLoader(box, USER, cache)
    box.create_folder("Work")
    box.append("Work", message(1))
    old_validity = box.status("Work").uidvalidity
    before = {i.uid: i for i in box.list("Work")}
    got = loader.load("Work", old_validity, fetchmod.datas_of(before, set(), [(1, u) for u in before]), True)
    assert b"message 1\r\n" in got[0]._top.data
    box.delete_folder("Work")
    box.create_folder("Work")
    box.append("Work", message(2))
    new_validity = box.status("Work").uidvalidity
    after = {i.uid: i for i in box.list("Work")}
    assert new_validity != old_validity and set(after) == set(before)
    got = loader.load("Work", new_validity, fetchmod.datas_of(after, set(), [(1, u) for u in after]), True)
    assert b"message 2\r\n" in got[0]._top.data



def test_envelope_from_the_header_alone_is_the_envelope_of_the_whole_message(corpora) -> None:
    """ENVELOPE is answered from the header cache (and the answer cache): it must be the same
    bytes as from the message's MIME tree, for real mail and the odd samples."""
    from mailsift.protocols.imap import response
    from mailsift.protocols.imap.envelope import envelope
    from mailsift.protocols.imap.headercache import header_part
    from mailsift.protocols.imap.mimetree import parse, to_crlf
    data = Path(__file__).resolve().parent.parent / "data"
    files = sorted((data / "imap_edges").glob("*.eml")) + sorted((data / "imap").glob("*.eml"))
    for sub in sorted(d for d in corpora.glob("*/*") if d.is_dir()):
        files += sorted(p for p in sub.iterdir() if p.is_file())[::10]
    assert len(files) > 500
    for f in files:
        raw = to_crlf(f.read_bytes())
        assert response.encode(envelope(header_part(raw))) == response.encode(envelope(parse(raw))), f


def test_internaldate_is_the_parser_s_format_of_the_utc_time() -> None:
    import datetime as dt
    import random

    from mailsift.protocols.imap.parser import format_datetime
    rnd = random.Random(7)
    for epoch in [0, 1.5, 951782400.0, 1.7e9 + 0.9999996, 4102444800.25] + [rnd.uniform(0, 4.2e9) for _ in range(5000)]:
        want = b'"' + format_datetime(dt.datetime.fromtimestamp(epoch, dt.timezone.utc)).encode() + b'"'
        assert fetchmod.internaldate(epoch) == want, epoch


def test_long_field_lists_are_neither_interned_nor_memoised_on_cached_headers() -> None:
    """A client names the fields of HEADER.FIELDS: one line may list thousands (~100 KB as a
    key). Memoised on cached headers, or interned, such keys were counted by no bound."""
    import gc
    import tracemalloc

    from mailsift.protocols.imap import sections
    from mailsift.protocols.imap.headercache import HeaderCache, _cost, header_part
    from mailsift.protocols.imap.parser import Section
    raw = to_crlf(message(1))
    bound = 2 * 1024 * 1024
    sections._KEYS.clear()
    gc.collect()
    tracemalloc.start()
    try:
        cache = HeaderCache(max_bytes=bound)
        for uid in range(bound // _cost(header_part(raw)) + 50):
            part = header_part(raw)
            cache.put(("u", "INBOX", 1, uid), part)
            names = ("Subject", *(f"X-Unheard-Of-Field-{uid}-{i:04d}" for i in range(2000)))
            answer = sections.section_bytes(part, Section((), "HEADER.FIELDS", names, "x"))
            assert answer == b"Subject: message 1\r\n\r\n"
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert used < 1.6 * bound, f"{used / bound:.2f} x the bound"
    assert not sections._KEYS
