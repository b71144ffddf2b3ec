"""Change notifications: what happened to which message in which folder.

Every change the store commits is published as `Event`s, after the commit and outside the
store's locks, to callbacks registered with `Store.subscribe` (called in the thread that made
the change: keep them short, never call back into a blocking store operation you hold a lock
for) or to an asyncio queue from `Store.watch(user)` (events are handed to the loop thread-safely).

Delivery is in-process; when `mailsift serve` runs IMAP worker processes (serve/workers.py) the
bus of each process hands its own events to `forward` and receives the other processes' through
`publish_remote` (never forwarded again), so every subscriber sees every change once, whichever
process made it. `interest(user, +1/-1)` is told when subscriptions for a user come and go (the
main process sends a worker only the events of users it has sessions for). Changes made by
others (mutt, Dovecot) are noticed when the store next syncs a folder and are published with
via="sync".
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterable, Literal

log = logging.getLogger("mailsift.store.events")

EventKind = Literal["new", "expunge", "flags", "folder-created", "folder-deleted", "folder-renamed"]


@dataclass(frozen=True)
class Event:
    """One change.

    kind:
      "new"       a message appeared in `folder` with `uid` (via deliver, append, copy, move, sync).
                  For copy/move, source_folder/source_special_use/source_uid say where it came from.
      "expunge"   message `uid` left `folder` (via expunge, move, sync).
      "flags"     flags of `uid` changed; `flags` is the new set, `added`/`removed` the difference
                  (system flags like "\\Seen" and keywords like "$Junk" alike).
      "folder-created" / "folder-deleted" / "folder-renamed" (old_name -> folder).
    special_use: the folder's special use ("\\Junk", "\\Sent", "\\Drafts", "\\Trash") or None.
    modseq: the folder's modification sequence after this change (CONDSTORE).
    """

    user: str
    kind: EventKind
    folder: str
    special_use: str | None = None
    uidvalidity: int = 0
    uid: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    added: frozenset[str] = field(default_factory=frozenset)
    removed: frozenset[str] = field(default_factory=frozenset)
    via: str = ""
    source_folder: str | None = None
    source_special_use: str | None = None
    source_uid: int | None = None
    old_name: str | None = None
    modseq: int = 0


Callback = Callable[[Event], None]


class Subscription:
    """A registered callback; `close()` (or leaving the `with` block) unregisters it."""

    def __init__(self, bus: "EventBus", sid: int) -> None:
        self._bus = bus
        self._sid = sid

    def close(self) -> None:
        self._bus._remove(self._sid)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, tuple[str | None, Callback]] = {}
        self._ids = itertools.count(1)
        # Set by serve/workers.py in multi-process serving (see the module docstring).
        self.forward: Callable[[list[Event]], None] | None = None
        self.interest: Callable[[str, int], None] | None = None

    def subscribe(self, callback: Callback, user: str | None = None) -> Subscription:
        with self._lock:
            sid = next(self._ids)
            self._subs[sid] = (user, callback)
        if user is not None and self.interest is not None:
            self.interest(user, 1)
        return Subscription(self, sid)

    def _remove(self, sid: int) -> None:
        with self._lock:
            gone = self._subs.pop(sid, None)
        if gone is not None and gone[0] is not None and self.interest is not None:
            self.interest(gone[0], -1)

    def publish(self, events: Iterable[Event]) -> None:
        """This process's own committed changes."""
        events = list(events)
        if not events:
            return
        self._dispatch(events)
        if self.forward is not None:
            try:
                self.forward(events)
            except Exception:  # noqa: BLE001 - never undo a committed change
                log.exception("forwarding events to the other processes failed")

    def publish_remote(self, events: list[Event]) -> None:
        """Changes another process of the same server committed (not forwarded again)."""
        if events:
            self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        with self._lock:
            subs = list(self._subs.values())
        for ev in events:
            for user, cb in subs:
                if user is None or user == ev.user:
                    try:
                        cb(ev)
                    except Exception:  # a subscriber's fault must not undo a committed change
                        log.exception("event subscriber failed on %s", ev.kind)


class EventQueue:
    """Events for one user as an asyncio queue, bound to the loop that created it.

        async with store.watch("alice@example.org") as events:
            ev = await events.get()          # or: async for ev in events
    """

    def __init__(self, bus: EventBus, user: str | None, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._sub = bus.subscribe(self._put, user)

    def _put(self, ev: Event) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ev)
        except RuntimeError:  # loop closed
            self._sub.close()

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event:
        """Raises asyncio.QueueEmpty when nothing is pending."""
        return self._queue.get_nowait()

    def pending(self) -> list[Event]:
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    def close(self) -> None:
        self._sub.close()

    def __aiter__(self) -> "EventQueue":
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    async def __aenter__(self) -> "EventQueue":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
