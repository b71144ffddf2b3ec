"""A process-wide cache of messages' top-level headers, for FETCH of header sections.

Clients list a folder with `FETCH 1:N (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])`
again and again; without a cache every such FETCH reads and parses N files (perf: it was the
largest CPU item of the load benchmark). Dovecot keeps the same in its dovecot.index.cache.

The key (user, folder, UIDVALIDITY, UID) names immutable content: a message's bytes never change
under its UID (Maildir files are only renamed), a renamed folder keeps UIDVALIDITY and UIDs, and a
folder recreated or reindexed gets a new, larger UIDVALIDITY. Only the header bytes are kept
(parsed fields), bounded in total bytes. Thread-safe. Beside it, `answers` keeps just the
HEADER.FIELDS answers of listings, for far more messages in far less memory (answercache.py).

Scan-resistant (a segmented LRU): a header enters on probation; it is protected once it is
asked for again, or at once when SORT or THREAD loaded it (clients sort the same folder again
at every change and page). Protected headers take at most PROTECTED_SHARE of the bound (past it
the least recently used go back on probation), and eviction takes the least recently used
header on probation first, a protected one only when none is left on probation. So one big
listing (a FETCH of the headers of 50,000 messages, each read once) churns the probation
segment alone and the headers SORT and THREAD use stay.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from mailsift.protocols.imap.answercache import AnswerCache
from mailsift.protocols.imap.mimetree import Part, parse_top
from mailsift.protocols.imap.sections import MEMO_BYTES, MEMO_ENTRIES

MAX_BYTES = 12 * 1024 * 1024     # (estimated) memory of the cached headers, whole process
ANSWER_BYTES = 4 * 1024 * 1024   # and of the answers kept beside them (answercache.py)
MAX_HEADER = 64 * 1024           # bigger headers are not cached
PROTECTED_SHARE = 0.8            # of max_bytes, at most, for protected headers

Key = tuple[str, str, int, int]


def header_part(raw_crlf: bytes) -> Part:
    """The top-level header of a message as a Part over the header bytes alone (answers
    RFC822.HEADER, BODY[HEADER], BODY[HEADER.FIELDS (...)] and its NOT form, nothing else)."""
    top = parse_top(raw_crlf)
    hdr = raw_crlf[:top.body_start]
    return Part(hdr, 0, len(hdr), len(hdr), top.fields)


def _cost(part: Part) -> int:
    """Rough memory of an entry: the header, its fields' copies, the objects around them, and
    room for what sessions attach to it later: the lower-cased field names and up to
    MEMO_ENTRIES memoised HEADER.FIELDS answers (each a subset of the header's lines, as a
    literal: `{n}` CRLF first)."""
    n = len(part.data)
    memo = 360 + MEMO_ENTRIES * (min(MEMO_BYTES, n + 2) + 110)
    return 2 * n + 180 * len(part.fields) + 400 + memo


class HeaderCache:
    def __init__(self, max_bytes: int = MAX_BYTES, answer_bytes: int = ANSWER_BYTES) -> None:
        self.max_bytes = max_bytes
        self.protected_max = round(max_bytes * PROTECTED_SHARE)
        self.answers = AnswerCache(answer_bytes)
        self._probation: OrderedDict[Key, Part] = OrderedDict()
        self._protected: OrderedDict[Key, Part] = OrderedDict()
        self._bytes = 0             # both segments
        self._protected_bytes = 0
        self._lock = threading.Lock()

    def _hit(self, key: Key) -> Part | None:
        """The entry, made the most recently used of the protected segment (lock held)."""
        part = self._protected.get(key)
        if part is not None:
            self._protected.move_to_end(key)
            return part
        part = self._probation.pop(key, None)
        if part is not None:
            self._protect(key, part, _cost(part))
        return part

    def _protect(self, key: Key, part: Part, size: int) -> None:
        """Into the protected segment; its least recently used beyond its share go back on
        probation, as the most recently used there (lock held; the total is unchanged)."""
        protected = self._protected
        protected[key] = part
        self._protected_bytes += size
        while self._protected_bytes > self.protected_max and len(protected) > 1:
            k, p = protected.popitem(last=False)
            self._protected_bytes -= _cost(p)
            self._probation[k] = p

    def get(self, key: Key) -> Part | None:
        with self._lock:
            return self._hit(key)

    def get_many(self, keys: list[Key]) -> list[Part | None]:
        """get() of each key, under one hold of the lock (perf: a listing asks for 50)."""
        hit = self._hit
        with self._lock:
            return [hit(key) for key in keys]

    def peek(self, key: Key) -> bool:
        """Whether the key is cached, without the lock or an LRU bump (a dict lookup is atomic):
        for guesses such as whether a FETCH may run inline."""
        return key in self._protected or key in self._probation

    def put(self, key: Key, part: Part, protect: bool = False) -> None:
        """Cache a header, on probation, or protected at once with `protect` (SORT, THREAD)."""
        if len(part.data) > MAX_HEADER:
            return
        size = _cost(part)
        with self._lock:
            old = self._probation.pop(key, None)
            if old is None:
                old = self._protected.pop(key, None)
                if old is not None:
                    self._protected_bytes -= _cost(old)
                    protect = True  # (it stays protected)
            if old is not None:
                self._bytes -= _cost(old)
            self._bytes += size
            if protect:
                self._protect(key, part, size)
            else:
                self._probation[key] = part
            while self._bytes > self.max_bytes:
                if self._probation:
                    _k, gone = self._probation.popitem(last=False)
                elif self._protected:
                    _k, gone = self._protected.popitem(last=False)
                    self._protected_bytes -= _cost(gone)
                else:
                    break
                self._bytes -= _cost(gone)

    def clear(self) -> None:
        """Forget every header (not the answers beside them)."""
        with self._lock:
            self._probation.clear()
            self._protected.clear()
            self._bytes = self._protected_bytes = 0

    def __len__(self) -> int:
        return len(self._probation) + len(self._protected)
