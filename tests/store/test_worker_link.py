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

from mailsift.serve.workers import WorkerLink, decode_events, encode_events, frame, read_frames
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
