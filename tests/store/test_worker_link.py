"""The link between an IMAP worker process and the main process (serve/workers.py): store
events cross it as tuples of their fields and come out equal; what a worker's store threads
publish while its loop is busy goes out in fewer writes, all of it, in order; frames are read
whole however the bytes arrive."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
from typing import Any

import pytest

from mailsift.serve.workers import (
    WorkerLink,
    decode_events,
    encode_events,
    frame,
    read_frames,
)
from mailsift.store.events import Event, EventBus


def full_event(uid: int) -> Event:
    """An event with every field away from its default."""
    return Event(user="u@example.test", kind="new", folder="Junk", special_use="\\Junk", uidvalidity=7, uid=uid,
                 flags=frozenset({"\\Seen", "$Junk"}), added=frozenset({"$Junk"}), removed=frozenset({"\\Flagged"}),
                 via="move", source_folder="INBOX", source_special_use="\\Sent", source_uid=uid + 1000,
                 old_name="Old", modseq=99)


def test_events_come_out_of_their_tuples_equal() -> None:
    events = [full_event(1), Event(user="v@example.test", kind="expunge", folder="INBOX", uid=3)]
    defaults = Event(user="x", kind="flags", folder="x")
    assert all(getattr(events[0], f.name) != getattr(defaults, f.name) for f in dataclasses.fields(Event))
    rows = encode_events(events)
    assert all(type(r) is tuple for r in rows)
    decoded = decode_events(rows)
    assert decoded == events
    # decode_events fills each instance's __dict__ instead of calling __init__: only right while
    # __init__ does nothing more than set the fields
    assert not hasattr(Event, "__post_init__") and "__slots__" not in vars(Event)
    for got, want in zip(decoded, events):
        assert type(got) is Event and vars(got) == vars(want) and hash(got) == hash(want)
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.uid = 5  # type: ignore[misc]


def test_frames_are_read_whole_however_the_bytes_arrive() -> None:
    messages = [("events", encode_events([full_event(i)])) for i in range(1, 6)] + [("ready",), ("x" * 10000,)]
    data = b"".join(frame(m) for m in messages)

    async def read(pieces: list[bytes]) -> list[Any]:
        reader = asyncio.StreamReader()

        async def feed() -> None:  # each piece read on its own
            for piece in pieces:
                reader.feed_data(piece)
                await asyncio.sleep(0)
            reader.feed_eof()

        feeder = asyncio.create_task(feed())
        got = [msg async for msg in read_frames(reader, chunk=4096)]  # frames over a chunk too
        await feeder
        return got

    assert asyncio.run(read([data])) == messages                                   # many in one read
    assert asyncio.run(read([data[i:i + 1] for i in range(len(data))])) == messages  # a byte at a time
    assert asyncio.run(read([data[:3], data[3:9000], data[9000:]])) == messages
    assert asyncio.run(read([])) == []                                             # closed: the end
    with pytest.raises(asyncio.IncompleteReadError):                               # closed mid-frame
        asyncio.run(read([data[:-1]]))


class _Store:
    """What WorkerLink needs of the store: its real event bus."""

    def __init__(self) -> None:
        self.events = EventBus()


def test_events_published_by_threads_arrive_whole_in_order_in_fewer_writes() -> None:
    async def run() -> tuple[list[Event], int]:
        worker_end, main_end = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=worker_end)
        main_reader, main_writer = await asyncio.open_unix_connection(sock=main_end)
        store = _Store()
        WorkerLink(reader, writer, store)
        n = 200
        # store threads publish while the loop is busy: one call per change, as storecalls do
        loop_busy = threading.Event()

        def publish() -> None:
            loop_busy.wait()
            for uid in range(1, n + 1):
                store.events.publish([full_event(uid)])

        t = threading.Thread(target=publish)
        t.start()
        loop_busy.set()
        t.join()  # (the loop is held here: everything published waits for one turn of it)
        got: list[Event] = []
        messages = 0
        frames = read_frames(main_reader)
        while len(got) < n:
            msg: Any = await asyncio.wait_for(frames.__anext__(), 10)
            assert msg[0] == "events"
            messages += 1
            got += decode_events(msg[1])
        writer.close()
        main_writer.close()
        return got, messages

    got, messages = asyncio.run(run())
    assert [ev.uid for ev in got] == list(range(1, 201))
    assert got[0] == full_event(1)
    assert messages < 200


def test_events_no_other_worker_waits_for_are_held_and_sent_at_a_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker holds the events of users no other worker has sessions of (only the main
    process's learner wants them) for EVENT_DELAY; a shared user's event sends them all at once,
    and drain() (the worker stopping) sends what is held."""
    from mailsift.serve import workers

    monkeypatch.setattr(workers, "EVENT_DELAY", 60.0)
    alone, shared = "a@example.test", "s@example.test"

    def ev(user: str, uid: int) -> Event:
        return Event(user=user, kind="flags", folder="INBOX", uid=uid, added=frozenset({"\\Seen"}), via="store")

    async def run() -> list[list[tuple[str, int | None]]]:
        worker_end, main_end = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=worker_end)
        main_reader, main_writer = await asyncio.open_unix_connection(sock=main_end)
        store = _Store()
        link = WorkerLink(reader, writer, store)
        link_task = asyncio.create_task(link.run())
        arrived: asyncio.Queue[Any] = asyncio.Queue()

        async def hub() -> None:
            async for msg in read_frames(main_reader):
                arrived.put_nowait(msg)

        hub_task = asyncio.create_task(hub())
        received: list[list[tuple[str, int | None]]] = []

        async def next_events(timeout: float) -> None:
            msg: Any = await asyncio.wait_for(arrived.get(), timeout)
            assert msg[0] == "events"
            received.append([(e.user, e.uid) for e in decode_events(msg[1])])

        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, store.events.publish, [ev(alone, 1)])   # a store thread
        store.events.publish([ev(alone, 2)])                                      # the loop's
        with pytest.raises(TimeoutError):
            await next_events(1.0)                                               # held
        main_writer.write(frame(("shared", shared, True)))                        # as the hub says
        await asyncio.sleep(0.2)
        await loop.run_in_executor(None, store.events.publish, [ev(shared, 3)])
        await next_events(10)                                                     # at once, all
        store.events.publish([ev(alone, 4)])
        main_writer.write(frame(("shared", shared, False)))
        await asyncio.sleep(0.2)
        store.events.publish([ev(shared, 5)])                                     # not shared now
        with pytest.raises(TimeoutError):
            await next_events(1.0)
        await link.drain()                                                        # the worker stops
        await next_events(10)
        link_task.cancel()
        hub_task.cancel()
        writer.close()
        main_writer.close()
        return received

    assert asyncio.run(run()) == [[(alone, 1), (alone, 2), (shared, 3)], [(alone, 4), (shared, 5)]]


def test_the_hub_tells_workers_which_users_are_shared() -> None:
    from mailsift.serve.workers import WorkerPool
    from mailsift.store.settings import StoreSettings

    user, other = "u@example.test", "o@example.test"

    async def run() -> list[list[Any]]:
        pool = WorkerPool(StoreSettings(), _Store(), {}, 3)
        ends = []
        for w in pool.workers:
            hub_end, worker_end = socket.socketpair()
            _r, w.writer = await asyncio.open_unix_connection(sock=hub_end)
            ends.append(await asyncio.open_unix_connection(sock=worker_end))
        w0, w1, w2 = pool.workers
        pool._handle(w0, ("want", user, 1))
        pool._handle(w0, ("want", other, 1))
        pool._handle(w1, ("want", user, 1))      # shared now: w0 and w1 are told
        pool._handle(w1, ("want", user, 1))      # a second session there: nothing new
        pool._handle(w2, ("want", user, 1))      # a third worker: told
        pool._handle(w1, ("want", user, -2))     # w1's sessions end: still shared by w0 and w2
        pool._handle(w2, ("want", user, -1))     # now w0 alone
        pool._handle(w2, ("want", user, 1))      # shared again ...
        pool._forget_interest(w2)                # ... until w2 dies
        for w in pool.workers:
            assert w.writer is not None
            w.writer.close()
        got = []
        for reader, writer in ends:
            got.append([msg async for msg in read_frames(reader)])
            writer.close()
        return got

    got = asyncio.run(run())
    assert got[0] == [("shared", user, True), ("shared", user, False), ("shared", user, True), ("shared", user, False)]
    assert got[1] == [("shared", user, True), ("shared", user, False)]
    assert got[2] == [("shared", user, True), ("shared", user, False), ("shared", user, True)]
