"""Per folder, the answers to the BODY[HEADER.FIELDS (...)] questions (and ENVELOPE) clients
ask of its messages, as FETCH sends them (Dovecot keeps the header fields clients asked for in
its dovecot.index.cache and never reads the file again).

A client listing a folder asks the same question (`BODY.PEEK[HEADER.FIELDS (FROM SUBJECT
DATE)]`) of every message, again and again. The header cache (headercache.py) keeps whole
parsed headers, ~10-15 KB each as it counts them, so a folder of a few thousand messages no
longer fits and every listing read every file again. This keeps the answers alone (typically
~150 bytes, plus ENTRY_COST of bookkeeping): the same memory answers folders ~50 times bigger.

Keyed (user, folder, UIDVALIDITY, question) -> {UID: answer}, as immutable as the header
cache's key: a message's bytes never change under its UID (Maildir files are only renamed), a
renamed folder keeps UIDVALIDITY and UIDs, a folder deleted and created again (or reindexed)
gets a new UIDVALIDITY. Flags are not part of an answer. Answers of expunged messages stay
until their folder's answers are evicted (a session that still shows such a message is served
from them, as from the header cache).

Bounded in (estimated) bytes for the whole process: the least recently used folder's answers
go first; a folder whose answers alone reach the bound keeps what it has and takes no more; an
answer over MAX_ANSWER bytes is not kept. Thread-safe: the maps handed out are only read by the
caller, and only written here under the lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_BYTES = 8 * 1024 * 1024   # (estimated) memory of the kept answers, whole process
MAX_ANSWER = 2048             # bigger answers are not kept (a listing's are ~100-300 bytes)
ENTRY_COST = 120              # per answer beyond its bytes: dict slot, int key, bytes object
MAP_COST = 800                # per (folder, question): the key, the dict, the bookkeeping
NAME_COST = 90                # and per field name of the question (its string, its set slot)

# sections._memo_key (HEADER.FIELDS[.NOT], the field names), or (ENVELOPE, the empty set)
QuestionKey = tuple[str, frozenset[str]]
MapKey = tuple[str, str, int, QuestionKey]
Answers = dict[int, bytes]


class AnswerCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._maps: OrderedDict[MapKey, Answers] = OrderedDict()
        self._sizes: dict[MapKey, int] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def maps(self, user: str, folder: str, uidvalidity: int, questions: list[QuestionKey]) -> list[Answers | None]:
        """Each question's answers kept for the folder, {UID: answer}, or None (nothing kept);
        to read only (perf: one hold of the lock for a listing's batch, then plain lookups)."""
        out: list[Answers | None] = []
        with self._lock:
            for q in questions:
                key = (user, folder, uidvalidity, q)
                found = self._maps.get(key)
                if found is not None:
                    self._maps.move_to_end(key)
                out.append(found)
        return out

    def put(self, user: str, folder: str, uidvalidity: int, question: QuestionKey,
            answers: list[tuple[int, bytes]]) -> None:
        """Keep these (UID, answer) pairs for the folder's question, within the bound."""
        key = (user, folder, uidvalidity, question)
        with self._lock:
            found = self._maps.get(key)
            if found is None:
                # (a client names the fields: a list of thousands must not cost as little as three)
                cost = MAP_COST + sum(len(name) + NAME_COST for name in question[1])
                if not self._make_room(cost, key):
                    return
                found = self._maps[key] = {}
                self._sizes[key] = cost
                self._bytes += cost
            else:
                self._maps.move_to_end(key)
            added = 0
            for uid, answer in answers:
                if uid in found or len(answer) > MAX_ANSWER:
                    continue
                cost = len(answer) + ENTRY_COST
                if not self._make_room(cost, key):
                    break
                found[uid] = answer
                self._bytes += cost
                added += cost
            self._sizes[key] += added

    def _make_room(self, cost: int, keep: MapKey) -> bool:
        """Evict other folders' answers, least recently used first, until `cost` more bytes fit;
        False when they cannot (the lock is held)."""
        while self._bytes + cost > self.max_bytes:
            oldest = next(iter(self._maps), None)
            if oldest is None or oldest == keep:
                return False
            del self._maps[oldest]
            self._bytes -= self._sizes.pop(oldest)
        return True

    def __len__(self) -> int:
        """The number of answers kept."""
        with self._lock:
            return sum(len(m) for m in self._maps.values())
