"""Store API cost in one process, without a protocol in front: what a change to the store's
internals (mailsift/store/api.py, indexdb.py, sync.py, listing.py) costs LMTP and IMAP.

    PYTHONPATH=TREE .venv/bin/python bench/store_calls.py [--deliveries 400] [--rounds 2000]
    PYTHONPATH=TREE .venv/bin/python bench/store_calls.py --cycles 2000 [--users 20] [--messages 200]

In a fresh mail root: `deliveries` Store.deliver calls (a 3.6 KB message, each with a dedup
key, as LMTP calls it), then `rounds` IMAP-style rounds on the same INBOX (get, status, read,
a \\Flagged change). Prints wall and CPU seconds of each phase. Deliveries wait for fsync, so
their wall time follows the disk; CPU time shows the store's own cost. To compare two trees,
alternate them several times (the machine is shared: figures are noisy) and take medians.

--cycles: instead, the store calls that one cycle of bench/imap_load.py's `session` mix makes
(as protocols/imap/session.py makes them, in one thread: the *_nowait calls first), over
`users` mailboxes of `messages` messages each (written into cur/ as another MDA leaves them),
one user after the other: SELECT; the per-command stamp check; three message reads; STORE
\\Seen on a random message; APPEND; NOOP's unchanged check; STORE \\Deleted on the new one;
EXPUNGE. The store's background unlinks are waited for at the end (in the totals). Prints wall
and CPU microseconds and SQL statements (SQLite's trace callback) per cycle for each call, and
the totals. Run it under `strace -c -f` (subtract a run with --cycles 0) to count system calls
per cycle.

--imap: the whole IMAP session cycle instead, in one process and deterministic enough for
`valgrind --tool=callgrind` (subtract a run with --imap 0): `users` clients, each logged in once
as its own user over loopback TCP, run bench/imap_load.py's session cycle (SELECT, FETCH 1:50
headers, three FETCH BODY.PEEK[], STORE \\Seen, APPEND, NOOP, STORE \\Deleted, EXPUNGE) against
the real session code (protocols/imap/session.py, its store threads, as an IMAP worker process
runs it: every command checks the folder's stamp) on the event loop mailsift runs (uvloop).
The clients share the server's loop and CPU; prints CPU microseconds per cycle.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from mailsift.store.api import INBOX, Store

MESSAGE = b"From: a@example.test\nTo: b@example.test\nSubject: hello\n\n" + b"line of body text\n" * 200


def cycles(n: int, users: int, messages: int, seed: int = 1, profile: bool = False) -> None:
    """The store calls of `n` session cycles of bench/imap_load.py (see the module docstring)."""
    import random
    from collections import defaultdict
    from pathlib import Path

    from mailsift.protocols.imap import storecalls

    rnd = random.Random(seed)
    extra = b"From: bench@example.test\r\nSubject: appended\r\n\r\n" + b"appended body line\r\n" * 40
    wall: dict[str, float] = defaultdict(float)
    user: dict[str, float] = defaultdict(float)
    system: dict[str, float] = defaultdict(float)
    sql: dict[str, int] = defaultdict(int)
    statements: list[str] = []  # every SQL statement of the mailboxes' connections (trace callback)

    def timed(what: str, fn, *args):  # type: ignore[no-untyped-def]
        n0 = len(statements)
        w, r = time.perf_counter(), resource.getrusage(resource.RUSAGE_THREAD)
        out = fn(*args)
        r2 = resource.getrusage(resource.RUSAGE_THREAD)
        wall[what] += time.perf_counter() - w
        user[what] += r2.ru_utime - r.ru_utime
        system[what] += r2.ru_stime - r.ru_stime
        sql[what] += len(statements) - n0
        return out

    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        boxes = []
        for u in range(users):
            name = f"user{u}@example.test"
            path = store.mailbox_path(name)
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            for i in range(messages):
                (path / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,").write_bytes(MESSAGE)
            box = store.mailbox(name)
            storecalls.select_data(box, INBOX, False)  # (the listing cache filled, \Recent claimed)
            box._db.conn.set_trace_callback(statements.append)
            boxes.append(box)
        print(f"setup done: {users} users x {messages} messages", flush=True)
        prof = None
        if profile:
            import cProfile
            prof = cProfile.Profile()
            prof.enable()
        t0, r0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        for i in range(n):
            box = boxes[i % users]
            sel = timed("select", storecalls.select_nowait, box, INBOX, False) \
                or timed("select (thread)", storecalls.select_data, box, INBOX, False)
            info, infos, _floor, stamp = sel
            for _ in range(6):  # the stamp check of FETCH x4, STORE x2 (worker processes)
                timed("stamp_nowait", box.stamp_nowait, INBOX)
            for _ in range(3):
                uid = infos[rnd.randrange(len(infos))].uid
                if timed("read_nowait", box.read_nowait, INBOX, uid) is None:
                    timed("read (thread)", box.read, INBOX, uid)
            uid = infos[rnd.randrange(len(infos))].uid
            timed("store \\Seen", lambda: storecalls.store_flags_nowait(box, INBOX, [uid], ["\\Seen"], "add", None)
                  or storecalls.store_flags(box, INBOX, [uid], ["\\Seen"], "add", None))
            new, _uv, listing = timed("append", storecalls.append, box, INBOX, extra, [], None,
                                      (INBOX, info.uidvalidity, infos[-1].uid, False))
            timed("noop unchanged_nowait", box.unchanged_nowait, INBOX, listing[2])
            timed("store \\Deleted", lambda: storecalls.store_flags_nowait(box, INBOX, [new.uid], ["\\Deleted"],
                                                                          "add", None)
                  or storecalls.store_flags(box, INBOX, [new.uid], ["\\Deleted"], "add", None))
            # (getattr: the bench also runs against trees without expunge_nowait, for A/B runs)
            gone, _b, _a = timed("expunge", lambda: getattr(storecalls, "expunge_nowait", lambda *a: None)(
                box, INBOX, None) or storecalls.expunge(box, INBOX, None))
            assert gone == [new.uid], gone
        store.unlinker.wait_idle() if hasattr(store, "unlinker") else None
        twall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        if prof is not None:
            import pstats
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(40)
        store.close()
    n = max(n, 1)
    print(f"{'per cycle':28} {'wall us':>8} {'user us':>8} {'sys us':>8} {'SQL':>5}")
    for what in wall:
        print(f"{what:28} {wall[what] / n * 1e6:8.1f} {user[what] / n * 1e6:8.1f} {system[what] / n * 1e6:8.1f} "
              f"{sql[what] / n:5.1f}")
    print(f"{'SQL statements per cycle':28} {sum(sql.values()) / n:35.1f}")
    print(f"{'cycle (all, untimed)':28} {twall / n * 1e6:8.1f} {(r1.ru_utime - r0.ru_utime) / n * 1e6:8.1f} "
          f"{(r1.ru_stime - r0.ru_stime) / n * 1e6:8.1f}")
    print("(the per-call rows include two getrusage calls each; the last row is the loop's whole cost)")


def imap(n: int, users: int, messages: int) -> None:
    """`n` IMAP session cycles spread over `users` clients (see the module docstring)."""
    import asyncio
    import random
    import re
    from pathlib import Path
    from typing import Any

    from mailsift import aioloop
    from mailsift.protocols.imap import session
    from mailsift.protocols.imap.context import SERVICES_KEY, ImapServices
    from mailsift.protocols.imap.headercache import HeaderCache
    from mailsift.protocols.imap.storethreads import StoreThreads
    from mailsift.serve.context import SessionContext
    from mailsift.store.settings import StoreSettings
    from mailsift.store.users import Users

    class Limiter:  # connection caps counted elsewhere: the session runs as in a worker process
        async def acquire(self, what: str, key: str, cap: int) -> bool:
            return True

        def release(self, what: str, key: str) -> None:
            pass

    extra = b"From: bench@example.test\r\nSubject: appended\r\n\r\n" + b"appended body line\r\n" * 40

    async def cmd(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tag: bytes, text: bytes) -> list[bytes]:
        writer.write(tag + b" " + text + b"\r\n")
        out = []
        while True:
            line = await reader.readline()
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if m:
                line += await reader.readexactly(int(m.group(1))) + await reader.readline()
            out.append(line)
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:40]!r} -> {line!r}")
                return out

    async def go(root: Path) -> tuple[float, float]:
        users_db = Users(root / "users.db")
        store = Store(root / "mail")
        names = [f"user{u}@example.test" for u in range(users)]
        for name in names:
            users_db.add(name, "bench-pw")
            path = store.mailbox_path(name)
            for sub in ("cur", "new", "tmp"):
                (path / sub).mkdir(parents=True, exist_ok=True)
            for i in range(messages):
                (path / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,").write_bytes(MESSAGE)
        threads = StoreThreads(4, "bench-store")
        shared: dict[str, Any] = {SERVICES_KEY: ImapServices(threads=threads, headers=HeaderCache(),
                                                             limiter=Limiter())}
        settings = StoreSettings(mail_root=str(store.root), users=str(users_db.path))

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ctx = SessionContext(store=store, users=users_db, settings=settings,
                                 peer=writer.get_extra_info("peername"), is_loopback=True, protocol="imap",
                                 shared=shared)
            await session.handle(reader, writer, ctx)

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = []
        for name in names:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
            await reader.readline()
            await cmd(reader, writer, b"l", f'LOGIN "{name}" "bench-pw"'.encode())
            conns.append((reader, writer, random.Random(name)))
        per = [n // users + (1 if u < n % users else 0) for u in range(users)]

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rnd: random.Random,
                         cycles: int) -> None:
            for c in range(cycles):
                t = b"c%d." % c
                untagged = await cmd(reader, writer, t + b"1", b"SELECT INBOX")
                exists = next(int(u.split()[1]) for u in untagged if u.rstrip().endswith(b"EXISTS"))
                await cmd(reader, writer, t + b"2", b"FETCH 1:%d (UID FLAGS BODY.PEEK[HEADER.FIELDS "
                          b"(FROM SUBJECT DATE)])" % min(50, exists))
                for k in range(3):
                    await cmd(reader, writer, t + b"3%d" % k, b"FETCH %d (BODY.PEEK[])" % rnd.randint(1, exists))
                await cmd(reader, writer, t + b"4", b"STORE %d +FLAGS (\\Seen)" % rnd.randint(1, exists))
                await cmd(reader, writer, t + b"5", b"APPEND INBOX {%d+}\r\n" % len(extra) + extra)
                await cmd(reader, writer, t + b"6", b"NOOP")
                await cmd(reader, writer, t + b"7", b"STORE %d +FLAGS.SILENT (\\Deleted)" % (exists + 1))
                await cmd(reader, writer, t + b"8", b"EXPUNGE")

        await asyncio.gather(*(client(r, w, rnd, 1) for r, w, rnd in conns))  # (warm: listings, headers)
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(r, w, rnd, k) for (r, w, rnd), k in zip(conns, per)))
        getattr(store, "unlinker", None) and store.unlinker.wait_idle()  # (trees without it: none)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        for _r, w, _rnd in conns:
            w.close()
        server.close()
        threads.shutdown()
        store.close()
        return wall, cpu

    with tempfile.TemporaryDirectory() as root:
        wall, cpu = aioloop.run(go(Path(root)))
    n = max(n, 1)
    print(f"imap cycles x{n} ({users} clients): wall {wall / n * 1e6:.0f} us, cpu {cpu / n * 1e6:.0f} us per cycle "
          f"(server, clients and the store's threads)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deliveries", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2000)
    ap.add_argument("--cycles", type=int, default=None, help="the IMAP session cycle's store calls instead")
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--profile", action="store_true", help="with --cycles: cProfile the cycles")
    ap.add_argument("--imap", type=int, default=None, help="this many IMAP session cycles instead")
    args = ap.parse_args()
    if args.imap is not None:
        imap(args.imap, args.users, args.messages)
        return
    if args.cycles is not None:
        cycles(args.cycles, args.users, args.messages, profile=args.profile)
        return
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        box = store.mailbox("bob@example.test")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.deliveries):
            box.deliver(MESSAGE, dedup_key=f"digest-{i}")
        dwall, dcpu = time.perf_counter() - wall, time.process_time() - cpu
        uids = box.uids(INBOX)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.rounds):
            uid = uids[i % len(uids)]
            box.get(INBOX, uid)
            box.status(INBOX)
            box.read(INBOX, uid)
            box.store_flags(INBOX, [uid], {"\\Flagged"}, "add" if (i // len(uids)) % 2 == 0 else "remove")
        iwall, icpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()
    print(f"deliver x{args.deliveries}: wall {dwall:.2f} s, cpu {dcpu:.2f} s | "
          f"imap rounds x{args.rounds}: wall {iwall:.2f} s, cpu {icpu:.2f} s")


if __name__ == "__main__":
    main()
