"""The header cache resists scans (headercache.py): a big listing of one folder (a FETCH of many
messages' headers, each read once) must not evict the headers SORT and THREAD of another folder
use, and the cache stays within its bound. Through the real loader over a real store, counting
the messages it reads from the store."""

from __future__ import annotations

import gc
import os
import re
import shutil
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from mailsift.protocols.imap import fetch as fetchmod
from mailsift.protocols.imap import search as searchmod
from mailsift.protocols.imap import thread as threadmod
from mailsift.protocols.imap.headercache import HeaderCache, _cost, header_part
from mailsift.protocols.imap.loader import MessageLoader
from mailsift.protocols.imap.sort import sort
from mailsift.store.api import Store

USER = "alice@example.test"
SORTED, LISTED = "Sorted", "Big"
N_SORTED, N_LISTED = 300, 3000


def message(folder: str, i: int) -> bytes:
    return (b"From: Sender %d <s%d@example.org>\r\nTo: alice@example.test\r\nSubject: %s message %d\r\n"
            b"Date: Mon, 1 Jan 2024 00:%02d:00 +0000\r\nMessage-ID: <%d.%s@example.org>\r\n\r\n"
            % (i % 50, i, folder.encode(), i, i % 60, i, folder.encode()) + b"body line\r\n" * 20)


class CountingLoader(MessageLoader):
    """The session's loader, counting the messages it reads from the store."""
    reads = 0

    def read(self, folder: str, uid: int) -> bytes:
        self.reads += 1
        return super().read(folder, uid)


@pytest.fixture(scope="module")
def box():
    # (in memory when there is /dev/shm: 3,300 fsynced files take seconds on a shared disk)
    work = Path(tempfile.mkdtemp(prefix="mailsift-scan-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    store = Store(work / "mail", hostname="test.host")
    try:
        b = store.mailbox(USER)
        for folder, n in ((SORTED, N_SORTED), (LISTED, N_LISTED)):
            b.create_folder(folder)
            for start in range(0, n, 500):
                b.append_many(folder, [(message(folder, i), [], None) for i in range(start, min(n, start + 500))])
        yield b
    finally:
        store.close()
        shutil.rmtree(work, ignore_errors=True)


def views(box, loader: MessageLoader, folder: str) -> list[searchmod.MessageView]:
    """The folder's messages as the session's search_views() makes them for SORT and THREAD."""
    uv = box.folder(folder).uidvalidity
    out = []
    for seq, info in enumerate(box.list(folder), 1):
        out.append(searchmod.MessageView(
            seq, info.uid, frozenset(info.flags), searchmod.from_epoch(info.internal_date),
            known_size=info.size, loader=lambda u=info.uid: loader.read(folder, u),
            header_loader=lambda u=info.uid: loader.header(folder, uv, u)))
    return out


def listing(box, loader: MessageLoader, folder: str, batch: int = 500) -> None:
    """A client listing the folder's headers, `FETCH a:b (UID FLAGS BODY.PEEK[HEADER.FIELDS
    (...)])` by batches, through the loader as the session calls it."""
    uv = box.folder(folder).uidvalidity
    infos = box.list(folder)
    for start in range(0, len(infos), batch):
        datas = [fetchmod.MessageData(i.uid, frozenset(i.flags), i.internal_date, i.size, i.modseq)
                 for i in infos[start:start + batch]]
        got = loader.load(folder, uv, datas, headers_only=True)
        assert all(d.top is not None for d in got)


def bounded(cache: HeaderCache) -> None:
    assert 0 < cache._bytes <= cache.max_bytes


def test_sort_and_thread_after_a_big_listing_still_hit_the_cache(box) -> None:
    one = _cost(header_part(message(LISTED, 1234)))
    cache = HeaderCache(max_bytes=2 * N_SORTED * one)   # room for the sorted folder, not the listing
    loader = CountingLoader(box, USER, cache)
    first = sort(views(box, loader, SORTED), [("SUBJECT", False)])
    assert loader.reads == N_SORTED
    listing(box, loader, LISTED)                         # 3,000 headers through a 600-header cache
    assert loader.reads == N_SORTED + N_LISTED
    bounded(cache)
    loader.reads = 0
    again = sort(views(box, loader, SORTED), [("SUBJECT", False)])
    assert loader.reads == 0, "the listing evicted the headers SORT uses"
    assert [v.uid for v in again] == [v.uid for v in first]
    threads = threadmod.thread(views(box, loader, SORTED), "REFERENCES")
    assert loader.reads == 0 and len(threads) == N_SORTED
    bounded(cache)


def test_a_second_listing_of_the_same_folder_still_finds_room(box) -> None:
    """Probation is not starved: with SORT's headers protected, a listing's recent pages are
    still kept (the rest of the bound), and paging back costs no read."""
    one = _cost(header_part(message(LISTED, 1234)))
    cache = HeaderCache(max_bytes=2 * N_SORTED * one)
    loader = CountingLoader(box, USER, cache)
    sort(views(box, loader, SORTED), [("DATE", False)])
    uv = box.folder(LISTED).uidvalidity
    page = box.list(LISTED)[-50:]
    listing(box, loader, LISTED)
    loader.reads = 0
    datas = [fetchmod.MessageData(i.uid, frozenset(i.flags), i.internal_date, i.size, i.modseq) for i in page]
    loader.load(LISTED, uv, datas, headers_only=True)
    assert loader.reads == 0
    bounded(cache)


def part(i: int, pad: int = 100):
    return header_part(b"Subject: %05d\r\nX-Pad: " % i + b"p" * pad + b"\r\n\r\nbody\r\n")


def segments(cache: HeaderCache) -> None:
    """The bookkeeping of both segments adds up and keeps to the bounds."""
    probation, protected = list(cache._probation.values()), list(cache._protected.values())
    assert cache._protected_bytes == sum(_cost(p) for p in protected) <= cache.protected_max
    assert cache._bytes == cache._protected_bytes + sum(_cost(p) for p in probation) <= cache.max_bytes
    assert not cache._probation.keys() & cache._protected.keys()


def test_the_segments_of_the_cache() -> None:
    from mailsift.protocols.imap.headercache import PROTECTED_SHARE
    cost = _cost(part(0))
    cache = HeaderCache(max_bytes=10 * cost)
    key = lambda i: ("u", "INBOX", 1, i)  # noqa: E731
    for i in range(5):
        cache.put(key(i), part(i))                    # on probation
    assert cache.get(key(0)) is not None and cache.get(key(1)) is not None   # asked again: protected
    for i in range(100, 200):                         # a scan: 100 headers read once
        cache.put(key(i), part(i))
        segments(cache)
    assert cache.get(key(0)) is not None and cache.get(key(1)) is not None
    assert cache.get(key(2)) is None                  # probation churned
    assert cache.peek(key(199)) and not cache.peek(key(100))
    # SORT's headers are protected at once, up to their share; past it the oldest go on probation
    for i in range(300, 320):
        cache.put(key(i), part(i), protect=True)
        segments(cache)
    assert len(cache._protected) == cache.protected_max // cost == int(10 * PROTECTED_SHARE) and cache.peek(key(319))
    assert not cache.peek(key(0))                     # demoted, then evicted by newer ones
    # with nothing on probation a protected header goes (never more than the bound)
    small = HeaderCache(max_bytes=int(2.5 * cost))
    for i in range(5):
        small.put(key(i), part(i), protect=True)
        segments(small)
    assert len(small) == 2
    # a header too big for the bound is not kept, in either segment
    tiny = HeaderCache(max_bytes=cost - 1)
    tiny.put(key(1), part(1), protect=True)
    tiny.put(key(2), part(2))
    assert len(tiny) == 0 and tiny._bytes == 0


def test_memory_stays_near_the_bound_under_a_scan_with_sorts() -> None:
    """Traced memory of the cache, not only its estimate, while a scan and protected headers
    share it."""
    bound = 2 * 1024 * 1024
    raw = message(LISTED, 1)
    gc.collect()
    tracemalloc.start()
    try:
        cache = HeaderCache(max_bytes=bound)
        for i in range(6000):
            cache.put(("u", "Big", 1, i), header_part(raw))
            if i % 3 == 0:
                cache.put(("u", "Sorted", 1, i), header_part(raw), protect=True)
            if i % 7 == 0:
                cache.get(("u", "Big", 1, i // 2))
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert cache._bytes <= bound and len(cache) < 8000
    assert used < 1.6 * bound, used


# ------------------------------------------------- the same through `mailsift serve`, over IMAP

def read_bytes(pid: int) -> int:
    """Bytes the process has read through read-like system calls (files, sockets, the index)."""
    m = re.search(r"^rchar: (\d+)$", Path(f"/proc/{pid}/io").read_text(), re.MULTILINE)
    assert m
    return int(m.group(1))


def outside_delivery(folder_dir: Path, messages: list[bytes]) -> None:
    """Files dropped into the folder's new/ as another MDA would (the server syncs them)."""
    for i, data in enumerate(messages):
        tmp = folder_dir / "tmp" / f"1700000000.M{i}P1Q1.scan.test"
        tmp.write_bytes(data)
        os.rename(tmp, folder_dir / "new" / tmp.name)


@pytest.mark.integration
def test_sort_after_a_big_listing_reads_no_message_again_over_imap(mailsift_bin: str) -> None:
    """`mailsift serve` (IMAP in its main process): SORT of a folder of 200 messages of 40 KB,
    a FETCH of the headers of 6,000 messages of another folder (more than the 12 MB cache
    holds), SORT again: the second SORT reads none of the 8 MB again (the process's read
    bytes, /proc/PID/io)."""
    from imap.conftest import ImapServer
    from imap.wire import Wire

    user, password = "scan@example.test", "scan-pw"
    work = Path(tempfile.mkdtemp(prefix="mailsift-scan-imap-"))
    srv = ImapServer(mailsift_bin, work, {user: password}, {"imap_workers": 0})
    try:
        srv.start()
        w = Wire(srv.host, srv.imap_port)
        w.login(user, password)
        for folder in (SORTED, LISTED):
            assert b" OK " in w.command(f"CREATE {folder}")[1]
        home = srv.mail_root / "example.test" / "scan"
        filler = b"\n".join(b"body line %05d of a long message" % j for j in range(1200)) + b"\n"
        outside_delivery(home / f".{SORTED}", [message(SORTED, i) + filler for i in range(200)])
        outside_delivery(home / f".{LISTED}", [message(LISTED, i) for i in range(6000)])
        pid = srv.daemon.pid

        def sort_cost() -> int:
            _, done = w.command(f"SELECT {SORTED}")
            assert b" OK " in done, done
            before = read_bytes(pid)
            untagged, done = w.command("SORT (SUBJECT) UTF-8 ALL")
            assert b" OK " in done and len(untagged[0].split()) == 202, (untagged, done)
            return read_bytes(pid) - before

        first = sort_cost()
        assert first > 200 * len(filler) * 0.9       # the messages were read (the measure works)
        _, done = w.command(f"SELECT {LISTED}")
        assert b" OK " in done, done
        untagged, done = w.command("FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
        assert b" OK " in done and len(untagged) >= 6000, done
        again = sort_cost()
        assert again < first / 20, (first, again)
        w.close()
    finally:
        srv.stop()
        log = srv.log()
        shutil.rmtree(work, ignore_errors=True)
    assert "Traceback" not in log, log[-5000:]
