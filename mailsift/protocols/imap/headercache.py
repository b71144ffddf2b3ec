"""A process-wide cache of messages' top-level headers, for FETCH of header sections.

Clients list a folder with `FETCH 1:N (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])`
again and again; without a cache every such FETCH reads and parses N files (perf: it was the
largest CPU item of the load benchmark). Dovecot keeps the same in its dovecot.index.cache.

The key (user, folder, UIDVALIDITY, UID) names immutable content: a message's bytes never change
under its UID (Maildir files are only renamed), a renamed folder keeps UIDVALIDITY and UIDs, and a
folder recreated or reindexed gets a new, larger UIDVALIDITY. Only the header bytes are kept
(parsed fields), bounded in total bytes; least recently used entries go first. Thread-safe.
Beside it, `answers` keeps just the HEADER.FIELDS answers of listings, for far more messages in
far less memory (answercache.py).
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
        self.answers = AnswerCache(answer_bytes)
        self._items: OrderedDict[Key, Part] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Key) -> Part | None:
        with self._lock:
            part = self._items.get(key)
            if part is not None:
                self._items.move_to_end(key)
            return part

    def get_many(self, keys: list[Key]) -> list[Part | None]:
        """get() of each key, under one hold of the lock (perf: a listing asks for 50)."""
        items = self._items
        out: list[Part | None] = []
        with self._lock:
            for key in keys:
                part = items.get(key)
                if part is not None:
                    items.move_to_end(key)
                out.append(part)
        return out

    def peek(self, key: Key) -> bool:
        """Whether the key is cached, without the lock or an LRU bump (a dict lookup is atomic):
        for guesses such as whether a FETCH may run inline."""
        return key in self._items

    def put(self, key: Key, part: Part) -> None:
        if len(part.data) > MAX_HEADER:
            return
        size = _cost(part)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= _cost(old)
            self._items[key] = part
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _k, gone = self._items.popitem(last=False)
                self._bytes -= _cost(gone)

    def __len__(self) -> int:
        return len(self._items)
