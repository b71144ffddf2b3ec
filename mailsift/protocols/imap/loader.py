"""The IMAP side's one door to message bytes: FETCH, SEARCH, SORT and THREAD read through here.

A `MessageLoader` belongs to one logged-in session (one user's `store.api.Mailbox`). It reads
messages with CRLF line ends from the store and keeps what FETCH asks for again:
- the last PARSED_CACHE messages it read, whole and parsed (a client asks BODYSTRUCTURE, then
  BODY[n] of the same message), keyed (folder, UIDVALIDITY, UID): a folder deleted and created
  again, or renamed over, reuses its name and UIDs for other messages;
- top-level headers in the process-wide `HeaderCache` (headercache.py), for FETCHes that want
  header sections only (a client listing a folder), for SORT and THREAD, and for messages
  expunged elsewhere that the session still shows (it has not been told yet);
- beside them, per folder, the HEADER.FIELDS answers of listings (answercache.py): a listing
  whose answers are all kept reads no header and no file.

Reads block, so `load` runs in a worker thread, except for batches small enough to read in the
event loop's thread (`inline=True`: a bigger batch or a busy mailbox lock raises WouldBlock
instead of waiting, and the caller retries in a worker thread).

The session builds each message's `fetch.MessageData` from its view (flags, sizes, whether it is
expunged); the loader adds the bytes or the header, or marks a message whose file is gone as
expunged (fetch.py answers what needs its bytes with NIL replies).
"""

from __future__ import annotations

from collections import OrderedDict

from mailsift.protocols.imap.fetch import MessageData, Question
from mailsift.protocols.imap.headercache import HeaderCache, header_part
from mailsift.protocols.imap.mimetree import Part
from mailsift.store import api as store_api

PARSED_CACHE = 8                # parsed messages kept per session (BODYSTRUCTURE then BODY[n])
INLINE_READ_BYTES = 256 * 1024  # a batch reading at most this much may be read in the loop's thread

Questions = tuple[Question, ...]  # fetch.Plan.questions


class WouldBlock(Exception):
    """An inline load met a busy mailbox lock (or a file just renamed): use a worker thread."""


class MessageLoader:
    def __init__(self, box: store_api.Mailbox, user: str, headers: HeaderCache) -> None:
        self.box = box
        self.user = user
        self.headers = headers
        self.parsed: OrderedDict[tuple[str, int, int], MessageData] = OrderedDict()

    def read(self, folder: str, uid: int) -> bytes:
        """The message with CRLF line ends (worker thread). Raises store_api.NoSuchMessage."""
        return self.box.read(folder, uid)

    def header(self, folder: str, uidvalidity: int, uid: int) -> Part:
        """The message's top-level header, through the header cache (worker thread): for SORT
        and THREAD, whose headers the cache protects from listings (headercache.py)."""
        hkey = (self.user, folder, uidvalidity, uid)
        top = self.headers.get(hkey)
        if top is None:
            top = header_part(self.read(folder, uid))
            self.headers.put(hkey, top, protect=True)
        return top

    def load(self, folder: str, uidvalidity: int, datas: list[MessageData], headers_only: bool = False,
             inline: bool = False, questions: Questions = ()) -> list[MessageData]:
        """The messages' bytes added to `datas` (parsed ones come from this session's cache, with
        the flags and modseq of `datas`). With headers_only (every attribute is a top-level
        header section), headers come from the header cache when they are there, without
        reading the file. With `questions` (fetch.Plan.questions: the FETCH asks nothing but
        UID, FLAGS and such, HEADER.FIELDS[.NOT] lists and ENVELOPE), a message whose answers the answer
        cache holds gets them as `answers` and needs no header at all; the answers of the others
        are put there. A message whose file is gone keeps what the caches hold and is marked
        `expunged`.

        Inline (in the event loop's thread) raises WouldBlock, before reading anything, when
        the batch has more than INLINE_READ_BYTES of files to read (cached headers and parsed
        messages cost nothing), and when a mailbox lock is busy, instead of waiting: then call
        it again in a worker thread. perf: a thread hand-off (futex wake-ups, GIL hand-over,
        context switches) cost more than reading a few KB from the page cache."""
        user, parsed = self.user, self.parsed
        if questions:
            datas, answered = self._answered(folder, uidvalidity, datas, questions), datas
            if not datas:
                return answered
        tops: list[Part | None] | None = None
        if headers_only:  # one hold of the cache's lock for the batch
            tops = self.headers.get_many([(user, folder, uidvalidity, d.uid) for d in datas])
        if inline:
            total = 0
            for i, data in enumerate(datas):
                if data.expunged or (tops is not None and tops[i] is not None) \
                        or (parsed and (folder, uidvalidity, data.uid) in parsed):
                    continue
                total += data.size
                if total > INLINE_READ_BYTES:
                    raise WouldBlock()
        out: list[MessageData] = []
        for i, data in enumerate(datas):
            if tops is not None:
                top = tops[i]
                if top is not None:
                    data._top = top  # raw stays None: not kept in self.parsed
                    data.header_only = True
                    out.append(data)
                    continue
            uid = data.uid
            key = (folder, uidvalidity, uid)
            hkey = (user, folder, uidvalidity, uid)
            cached = parsed.get(key) if parsed else None
            if cached is not None:
                parsed.move_to_end(key)
                if not headers_only:
                    cached.info = data.info  # the view's flags and modseq
                    out.append(cached)
                    continue
                data.raw = cached.raw  # its header into the header cache, as if read now
            elif data.expunged:  # a ghost: its file is gone
                data._top = self.headers.get(hkey)
                out.append(data)
                continue
            else:
                try:
                    if inline:
                        raw = self.box.read_nowait(folder, uid)
                        if raw is None:
                            raise WouldBlock()
                        data.raw = raw
                    else:
                        data.raw = self.read(folder, uid)
                except store_api.NoSuchMessage:  # expunged by another session since the refresh
                    data.expunged = True
                    data._top = self.headers.get(hkey)
                    out.append(data)
                    continue
                parsed[key] = data
                while len(parsed) > PARSED_CACHE:
                    parsed.popitem(last=False)
            if headers_only:
                data._top = header_part(data.raw or b"")  # (answers this FETCH too: parsed once)
                self.headers.put(hkey, data._top)
            out.append(data)
        if questions:
            self._keep_answers(folder, uidvalidity, out, questions)
            return answered  # (the same objects, in order)
        return out

    def _answered(self, folder: str, uidvalidity: int, datas: list[MessageData],
                  questions: Questions) -> list[MessageData]:
        """Give each message whose every answer is in the answer cache its `answers`; the rest."""
        maps = self.headers.answers.maps(self.user, folder, uidvalidity, [q for q, _answer in questions])
        if any(m is None for m in maps):
            return datas
        rest = []
        if len(maps) == 1:
            found = maps[0]
            assert found is not None
            for data in datas:
                answer = found.get(data.uid)
                if answer is None:
                    rest.append(data)
                else:
                    data.answers = (answer,)
            return rest
        for data in datas:
            answers = tuple(m.get(data.uid) for m in maps if m is not None)
            if None in answers:
                rest.append(data)
            else:
                data.answers = answers  # type: ignore[assignment]
        return rest

    def _keep_answers(self, folder: str, uidvalidity: int, datas: list[MessageData], questions: Questions) -> None:
        """Put the answers of messages loaded with their header in the answer cache (memoised on
        the header: the FETCH that follows takes them from there)."""
        answers = self.headers.answers
        for key, answer in questions:
            found = [(d.uid, answer(d.top)) for d in datas
                     if d._top is not None or d._root is not None or d.raw is not None]
            if found:
                answers.put(self.user, folder, uidvalidity, key, found)
