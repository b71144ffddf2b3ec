"""Folder listings: MessageInfo, the row list() returns, and the ListingCache that keeps
whole listings between calls, patched by this process's own changes and checked against the
folder's stamp (UIDVALIDITY, HIGHESTMODSEQ, UIDNEXT) before use."""

from __future__ import annotations

import bisect
import functools
import gc
import sqlite3
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Iterable, Iterator, NamedTuple


class MessageInfo(NamedTuple):
    """uid; flags (system flags and keywords); internal_date (epoch seconds); size (CRLF octets);
    modseq (CONDSTORE); key (the Maildir base name: unique in the folder, stable while the message
    stays there, also across index rebuilds — usable as a POP3 UIDL); save_date (epoch seconds
    it was saved in this folder by delivery, APPEND, COPY or MOVE: RFC 8514; None: unknown).
    Immutable (a NamedTuple: cheap to make by the hundred thousand)."""

    uid: int
    flags: frozenset[str]
    internal_date: float
    size: int
    modseq: int
    key: str
    save_date: float | None = None


info_of = functools.partial(tuple.__new__, MessageInfo)
"""A MessageInfo from one tuple of all its fields, without the Python-level __new__ a call of
MessageInfo runs (perf: that call was a third of building a 100,000-message listing)."""

_gc_lock = threading.Lock()
_gc_pausers = 0          # threads inside gc_paused()
_gc_was_enabled = False  # whether the first of them found the collector enabled


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while listing rows are read and made (perf: reading
    100,000 rows makes 200,000 tuples, and the collections they set off, full ones among
    them as the heap holds other listings, took a third of an uncached SELECT). The
    collector runs again once the last thread inside has left (a count, so that threads
    reading at once do not enable it under each other); what the pause left uncollected is
    collected then. Does nothing to a collector someone else turned off."""
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


Stamp = tuple[int, int, int]  # (uidvalidity, highestmodseq, uidnext): changes with every change


class ListingCache:
    """Folder listings (list()) kept between calls and patched by this process's own flag
    changes, appends and expunges (perf: SELECT, NOOP and the refresh after a change re-read and
    rebuilt every row each time). An entry is used only while its stamp (UIDVALIDITY,
    HIGHESTMODSEQ, UIDNEXT) equals the folder row's: any change it was not patched with, by
    whatever path or process, bumps HIGHESTMODSEQ or UIDNEXT and makes it a miss. Bounded by the
    total number of messages kept (least recently used folders go first). Thread-safe."""

    MAX_ROWS = 200_000
    MAX_FOLDER = MAX_ROWS // 2  # bigger folders are not kept (one may take half the cache)

    def __init__(self) -> None:
        self._items: "OrderedDict[tuple[str, int], tuple[Stamp, list[MessageInfo]]]" = OrderedDict()
        self._rows = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, int], stamp: Stamp) -> list[MessageInfo] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is None or hit[0] != stamp:
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: tuple[str, int], stamp: Stamp, infos: list[MessageInfo]) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._rows -= len(old[1])
            if len(infos) > self.MAX_FOLDER:
                return
            self._items[key] = (stamp, infos)
            self._rows += len(infos)
            while self._rows > self.MAX_ROWS and self._items:
                _k, (_s, gone) = self._items.popitem(last=False)
                self._rows -= len(gone)

    def patch(self, key: tuple[str, int], before: Stamp, after: Stamp,
              changed: Iterable[MessageInfo] = (), removed: Iterable[int] = ()) -> None:
        """Apply one change committed to the index: only to an entry that was current before it
        (stamp `before`); any other entry is dropped. `changed` replaces or (UIDs above all)
        appends messages; `removed` UIDs go."""
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return
            if hit[0] != before:
                self._rows -= len(self._items.pop(key)[1])
                return
            infos = list(hit[1])  # readers may hold the old list
            gone = set(removed)
            if gone:
                infos = [m for m in infos if m.uid not in gone]
            for m in changed:
                i = bisect.bisect_left(infos, m.uid, key=lambda x: x.uid)
                if i < len(infos) and infos[i].uid == m.uid:
                    infos[i] = m
                elif i == len(infos):
                    infos.append(m)
                else:
                    infos.insert(i, m)
            self._rows += len(infos) - len(hit[1])
            self._items[key] = (after, infos)

    def drop(self, key: tuple[str, int]) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._rows -= len(old[1])


def stamp_of(frow: sqlite3.Row) -> Stamp:
    """The stamp of a folder row (IndexDB.folder)."""
    return (frow["uidvalidity"], frow["highestmodseq"], frow["uidnext"])


def uid_range(infos: list[MessageInfo], uid_min: int, uid_max: int) -> list[MessageInfo]:
    """The messages of a listing (ascending UID) with uid_min <= uid <= uid_max."""
    lo = bisect.bisect_left(infos, uid_min, key=lambda m: m.uid)
    hi = bisect.bisect_right(infos, uid_max, key=lambda m: m.uid)
    return infos[lo:hi]


MAX_KEYWORDS = 256
"""Distinct keywords one folder may hold: a STORE, APPEND, COPY or MOVE that would add more is
refused (IMAP: `NO [LIMIT]`). Without it one message took 11,000 keywords and SELECT's FLAGS
response grew to 68 KB."""


def keywords_of(infos: Iterable[MessageInfo]) -> set[str]:
    """The distinct keywords (flags without a backslash) of a listing."""
    out: set[str] = set()
    seen: set[frozenset[str]] = set()
    for m in infos:
        if m.flags not in seen:  # a folder has few distinct flag sets
            seen.add(m.flags)
            out.update(f for f in m.flags if not f.startswith("\\"))
    return out


def too_many_keywords(have: Iterable[str], adding: Iterable[str]) -> bool:
    """Whether adding these flags to a folder that holds the keywords `have` passes
    MAX_KEYWORDS (keywords it holds already cost nothing, also when it is over the bound)."""
    extra = {f for f in adding if not f.startswith("\\")} - set(have)
    return bool(extra) and len(set(have)) + len(extra) > MAX_KEYWORDS
