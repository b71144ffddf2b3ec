"""IMAP: mailsift against Dovecot (Debian's dovecot-imapd, a private instance) in one run, in rounds.

    .venv/bin/python bench/imap_load.py [--clients 20] [--messages 200] [--seconds 15] [--rounds 3]
                                        [--mixes session,relogin] [--big 100000] [--idle 100]
                                        [--servers mailsift,dovecot] [--workers N] [--no-auth-cache]

Both servers check real password hashes: mailsift its scrypt users database (with its auth
cache, `[store] auth_cache_size`, unless --no-auth-cache), Dovecot a passwd-file of
SHA512-CRYPT hashes with its auth cache on (`auth_cache_size = 10M`, `auth_cache_ttl = 1 hour`),
as a careful admin runs it.

1. Load: C concurrent clients, each logged in as its own user whose INBOX holds M real messages
   (SpamAssassin easy_ham, read in place from ../shared/corpora), for S seconds per mix:
   - session: one login, then in a loop: SELECT INBOX; FETCH 1:50 headers (UID FLAGS
     BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]); three FETCH BODY.PEEK[] of random messages;
     STORE +FLAGS (\\Seen) on one; APPEND a message; NOOP (to learn its number); STORE
     +FLAGS.SILENT (\\Deleted) on it and EXPUNGE: 10 commands a cycle.
   - relogin: as phones do, every cycle a new connection: LOGIN; SELECT INBOX; FETCH 1:50
     headers; one FETCH BODY.PEEK[]; STORE +FLAGS (\\Seen) on one; LOGOUT.
   Every command is one operation; the figure is operations per second over all clients. A
   command answered with anything but OK is a protocol error: counted and printed, and the
   client goes on with its next cycle. Both servers get identical Maildir++ copies and the same
   client code (asyncio, raw IMAP).
   Rounds: both servers are started once; each mix then runs R rounds (--rounds), a round being
   one load on each server back to back, mailsift first in odd rounds and Dovecot first in even
   ones. Each round prints both figures and their ratio; the summary gives the medians over the
   rounds, the ratio being the median of the rounds' ratios (a pair run back to back is less
   moved by other work on the host than figures minutes apart). `--servers mailsift` (or
   `dovecot`) runs one side alone (no ratio), for A/B work on one server.
2. Big mailbox (--big 0 skips it): a B-message INBOX (1 KB messages written straight into Maildir cur/, as another
   MDA would leave them); after one warm-up session (each server builds its index), a fresh
   session times SELECT and `UID FETCH 1:* (FLAGS)`.
3. Memory (--idle 0 skips it; measured first, after a short warm-up): N idle connections (logged in, INBOX
   selected); the servers' resident memory before and after, per connection (mailsift: the serve
   process and its IMAP workers; Dovecot: all its processes).
CPU: user+system seconds of every server process (process group, with the children they have
reaped) while all load clients are running, as cores and as ms per operation; and this
script's own CPU (the client, on the same 2 cores). CPU per operation moves less than
operations/s when other work shares the machine: compare that across runs.

The machine is shared with other work (2 cores): figures are noisy; read the per-round figures
beside the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.dovecot import DovecotInstance  # noqa: E402
from harness.procs import Daemon, free_port, tcp_ready, wait_for  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin" / "easy_ham"
PASSWORD = "bench-password"
MAILSIFT = str(Path(sys.executable).parent / "mailsift")
DOMAIN = "example.test"


class Client:
    """A minimal IMAP client on asyncio streams (the same for both servers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.n = 0

    @classmethod
    async def connect(cls, port: int) -> "Client":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 24)
        c = cls(reader, writer)
        await c.reader.readline()
        return c

    async def response(self) -> bytes:
        line = await self.reader.readline()
        if not line:
            raise ConnectionError("server closed")
        out = line
        while True:
            m = re.search(rb"\{(\d+)\}\r\n$", line)
            if not m:
                return out
            out += await self.reader.readexactly(int(m.group(1)))
            line = await self.reader.readline()
            out += line

    async def cmd(self, text: bytes) -> tuple[list[bytes], bytes]:
        self.n += 1
        tag = b"b%d" % self.n
        self.writer.write(tag + b" " + text + b"\r\n")
        untagged = []
        while True:
            r = await self.response()
            if r.startswith(tag + b" "):
                if not r.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text[:60]!r} -> {r!r}")
                return untagged, r
            untagged.append(r)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except Exception:  # noqa: BLE001
            pass


def corpus_messages(n: int) -> list[bytes]:
    files = sorted(CORPUS.iterdir())[:n]
    return [f.read_bytes() for f in files]


def write_maildir(path: Path, messages: list[bytes], seen_every: int = 0) -> None:
    """Messages straight into Maildir cur/ (as another MDA or a migration leaves them)."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(messages):
        flags = "S" if seen_every and i % seen_every == 0 else ""
        (path / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,{flags}").write_bytes(data)


class MailsiftServer:
    workers: int | None = None  # [store] imap_workers; None = the server's default (one per CPU)
    auth_cache: bool = True     # False: [store] auth_cache_size = 0 (every login hashed)

    def __init__(self, workdir: Path, mail_root: Path, users: list[str]) -> None:
        from mailsift.store.users import Users
        self.workdir = workdir
        self.port = free_port()
        config = workdir / "mailsift.toml"
        config.write_text(
            "[store]\n"
            f'mail_root = "{mail_root}"\nusers = "{workdir / "users.db"}"\n'
            f'lmtp = "off"\npop3 = "off"\npop3s = "off"\nimaps = "off"\nlookup = "off"\n'
            f'imap = "127.0.0.1:{self.port}"\nhostname = "bench.mailsift.test"\n'
            + (f"imap_workers = {self.workers}\n" if self.workers is not None else "")
            + ("" if self.auth_cache else "auth_cache_size = 0\n")
            # the learner's model and state in the work directory, not in the tree it runs from
            + f'[classifier]\ndbpath = "{workdir / "models"}"\n')
        db = Users(workdir / "users.db")
        for u in users:
            db.add(u, PASSWORD)
        self.daemon = Daemon([MAILSIFT, "serve", "--config", str(config), "--log-level", "WARNING"],
                             workdir / "serve.log")

    def start(self) -> "MailsiftServer":
        self.daemon.start()
        wait_for(lambda: tcp_ready("127.0.0.1", self.port) or not self.daemon.alive(), 60, what="mailsift serve")
        if not self.daemon.alive():
            raise RuntimeError(self.daemon.log())
        return self

    def pids(self) -> list[int]:
        return group_pids(self.daemon.pid)  # the serve process and its IMAP worker processes

    def stop(self) -> None:
        self.daemon.stop()


class HashedDovecot(DovecotInstance):
    """The test harness's Dovecot with SHA512-CRYPT hashes in its passwd-file instead of PLAIN."""

    def _passwd(self) -> str:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        return "".join(f"{name}:{{SHA512-CRYPT}}{crypt.crypt(pw, crypt.mksalt(crypt.METHOD_SHA512))}::::::\n"
                       for name, pw in self.users.items())


class DovecotServer:
    def __init__(self, workdir: Path, mail_root: Path, users: list[str]) -> None:
        self.dc = HashedDovecot(workdir, {u: PASSWORD for u in users}, mail_root=mail_root,
                                pop3=False, lmtp=False,
                                extra_conf="mail_fsync = optimized\nauth_cache_size = 10M\n"
                                           "auth_cache_ttl = 1 hour\n")
        self.port = self.dc.imap_port

    def start(self) -> "DovecotServer":
        self.dc.start()
        return self

    def pids(self) -> list[int]:
        assert self.dc.daemon is not None
        return group_pids(self.dc.daemon.pid)

    def stop(self) -> None:
        self.dc.stop()


def group_pids(pgid: int) -> list[int]:
    """Every process of a process group (the daemons run in their own session)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.append(int(entry))
            except ProcessLookupError:
                pass
    return out


def cpu_seconds(pids: list[int]) -> tuple[float, float]:
    """(user, system) CPU seconds of these processes so far (/proc/PID/stat), with their reaped
    children's (cutime, cstime): Dovecot runs a process per login, and one that has exited
    since the first sample counts in its parent's, which is in the group."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
        except (OSError, IndexError, ValueError):
            pass
    return user / tick, system / tick


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


# -- 1. load --------------------------------------------------------------------------------

MIXES = ("session", "relogin")


async def session_cycle(c: Client, rnd: random.Random, extra: bytes) -> int:
    untagged, _ = await c.cmd(b"SELECT INBOX")
    exists = next(int(u.split()[1]) for u in untagged if u.rstrip().endswith(b"EXISTS"))
    await c.cmd(b"FETCH 1:%d (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])" % min(50, exists))
    for _ in range(3):
        await c.cmd(b"FETCH %d (BODY.PEEK[])" % rnd.randint(1, exists))
    await c.cmd(b"STORE %d +FLAGS (\\Seen)" % rnd.randint(1, exists))
    await c.cmd(b"APPEND INBOX {%d+}\r\n" % len(extra) + extra)
    await c.cmd(b"NOOP")  # learn the new message's number
    await c.cmd(b"STORE %d +FLAGS.SILENT (\\Deleted)" % (exists + 1))
    await c.cmd(b"EXPUNGE")
    return 10


async def relogin_cycle(c: Client, user: str, rnd: random.Random) -> int:
    await c.cmd(f'LOGIN "{user}" "{PASSWORD}"'.encode())
    untagged, _ = await c.cmd(b"SELECT INBOX")
    exists = next(int(u.split()[1]) for u in untagged if u.rstrip().endswith(b"EXISTS"))
    await c.cmd(b"FETCH 1:%d (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])" % min(50, exists))
    await c.cmd(b"FETCH %d (BODY.PEEK[])" % rnd.randint(1, exists))
    await c.cmd(b"STORE %d +FLAGS (\\Seen)" % rnd.randint(1, exists))
    await c.cmd(b"LOGOUT")
    return 6


async def worker(port: int, user: str, seconds: float, mix: str, extra: bytes, counts: list[int],
                 errors: list[str], ready: asyncio.Queue[None]) -> None:
    rnd = random.Random(user)
    ops = 0
    if mix == "relogin":
        ready.put_nowait(None)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            c = await Client.connect(port)
            try:
                ops += await relogin_cycle(c, user, rnd)
            except (RuntimeError, ConnectionError) as exc:
                errors.append(str(exc))
            finally:
                await c.close()
        counts.append(ops)
        return
    c = await Client.connect(port)
    await c.cmd(f'LOGIN "{user}" "{PASSWORD}"'.encode())
    ready.put_nowait(None)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            ops += await session_cycle(c, rnd, extra)
        except RuntimeError as exc:  # a NO or BAD: counted, and on with the next cycle
            errors.append(str(exc))
    counts.append(ops)
    await c.cmd(b"LOGOUT")
    await c.close()


async def load(port: int, users: list[str], seconds: float, mix: str, extra: bytes,
               pids: Callable[[], list[int]] | None = None) -> tuple[float, float, float, float, list[str]]:
    """-> (operations/s, server CPU cores, of which system (kernel) time, this client's CPU
    cores, protocol errors). CPU is sampled once every client has started, over most of the run."""
    counts: list[int] = []
    errors: list[str] = []
    ready: asyncio.Queue[None] = asyncio.Queue()
    cpu: list[float] = []

    async def sample() -> None:
        for _ in users:
            await ready.get()
        procs = pids() if pids else []
        c0, o0, t0 = cpu_seconds(procs), time.process_time(), time.monotonic()
        await asyncio.sleep(seconds * 0.8)
        t = time.monotonic() - t0
        c1 = cpu_seconds(procs)
        cpu.extend(((c1[0] + c1[1] - c0[0] - c0[1]) / t, (c1[1] - c0[1]) / t, (time.process_time() - o0) / t))

    start = time.monotonic()
    await asyncio.gather(sample(), *(worker(port, u, seconds, mix, extra, counts, errors, ready) for u in users))
    return sum(counts) / (time.monotonic() - start), cpu[0], cpu[1], cpu[2], errors


# -- 2. big mailbox ---------------------------------------------------------------------------

async def big_mailbox(port: int, user: str) -> tuple[float, float, float, int]:
    t0 = time.monotonic()
    c = await Client.connect(port)
    await c.cmd(f'LOGIN "{user}" "{PASSWORD}"'.encode())
    await c.cmd(b"SELECT INBOX")  # first touch: the server indexes the files
    warm = time.monotonic() - t0
    await c.cmd(b"LOGOUT")
    await c.close()
    c = await Client.connect(port)
    await c.cmd(f'LOGIN "{user}" "{PASSWORD}"'.encode())
    t0 = time.monotonic()
    untagged, _ = await c.cmd(b"SELECT INBOX")
    select = time.monotonic() - t0
    t0 = time.monotonic()
    untagged, _ = await c.cmd(b"UID FETCH 1:* (FLAGS)")
    fetch = time.monotonic() - t0
    await c.cmd(b"LOGOUT")
    await c.close()
    return warm, select, fetch, len(untagged)


# -- 3. idle memory ---------------------------------------------------------------------------

async def _open_idle(port: int, users: list[str], n: int) -> list[Client]:
    clients = []
    for i in range(n):
        c = await Client.connect(port)
        await c.cmd(f'LOGIN "{users[i % len(users)]}" "{PASSWORD}"'.encode())
        await c.cmd(b"SELECT INBOX")
        clients.append(c)
    return clients


async def idle_memory(server: object, port: int, users: list[str], n: int) -> float:
    """RSS growth per idle connection. A first round (opened, then closed) lets the allocator
    reach its working size (password hashing briefly takes tens of MB per login), so the
    second round measures what a connection keeps."""
    for c in await _open_idle(port, users, n):
        await c.close()
    await asyncio.sleep(1.0)
    before = rss_kb(server.pids())  # type: ignore[attr-defined]
    clients = await _open_idle(port, users, n)
    await asyncio.sleep(1.0)
    after = rss_kb(server.pids())  # type: ignore[attr-defined]
    for c in clients:
        await c.close()
    return (after - before) / n


SERVERS = ("mailsift", "dovecot")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=15.0, help="per mix, per server, per round")
    ap.add_argument("--rounds", type=int, default=3,
                    help="load rounds per mix, the servers alternating (the first swapped each round)")
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help=f"comma-separated, of {', '.join(SERVERS)} (one alone: no ratio, for A/B work)")
    ap.add_argument("--mixes", default=",".join(MIXES), help=f"comma-separated, of {', '.join(MIXES)}")
    ap.add_argument("--big", type=int, default=100_000, help="messages in the big mailbox (0: skip)")
    ap.add_argument("--idle", type=int, default=100, help="idle connections for the memory figure (0: skip)")
    ap.add_argument("--workers", type=int, default=None,
                    help="mailsift's [store] imap_workers (default: its own default, one per CPU)")
    ap.add_argument("--no-auth-cache", action="store_true", help="mailsift with auth_cache_size = 0")
    args = ap.parse_args()
    mixes = [m for m in args.mixes.split(",") if m]
    if not mixes or any(m not in MIXES for m in mixes):
        ap.error(f"--mixes: choose from {', '.join(MIXES)}")
    names = [s for s in SERVERS if s in args.servers.split(",")]
    if not names or any(s not in SERVERS for s in args.servers.split(",") if s):
        ap.error(f"--servers: choose from {', '.join(SERVERS)}")
    if args.rounds < 1:
        ap.error("--rounds: at least 1")
    MailsiftServer.workers = args.workers
    MailsiftServer.auth_cache = not args.no_auth_cache

    base = Path(tempfile.mkdtemp(prefix="imap-bench-"))
    os.chmod(base, 0o755)
    users = [f"user{i:02d}@{DOMAIN}" for i in range(args.clients)]
    big_user = f"big@{DOMAIN}"
    msgs = corpus_messages(args.messages)
    extra = msgs[0]
    print(f"setup: {len(users)} users x {len(msgs)} messages (easy_ham), big mailbox {args.big} x 1 KB, "
          f"mixes {', '.join(mixes)}, {args.seconds:.0f} s each, {args.rounds} round(s) of {', '.join(names)}; "
          f"mailsift auth cache {'off' if args.no_auth_cache else 'on'} ...", flush=True)
    seed = base / "seed"
    for u in users:
        write_maildir(seed / DOMAIN / u.split("@")[0], msgs, seen_every=3)
    filler = b"From: bulk@example.test\r\nSubject: bulk\r\n\r\n" + b"x" * 1000 + b"\r\n"
    if args.big:
        write_maildir(seed / DOMAIN / "big", [filler] * args.big, seen_every=2)
    # per server: single figures (idle_kb, warm, select, fetch, fetched) and, per mix, one entry
    # per round (ops, cpu, sys, client_cpu, errors)
    results: dict[str, dict[str, float]] = {n: {} for n in names}
    rounds: dict[str, dict[str, list[dict[str, float]]]] = {n: {m: [] for m in mixes} for n in names}
    errors: dict[str, dict[str, list[str]]] = {n: {m: [] for m in mixes} for n in names}
    servers: dict[str, MailsiftServer | DovecotServer] = {}
    try:
        for name in names:  # both started once, before any load
            root = base / f"{name}-mail"
            shutil.copytree(seed, root)
            workdir = base / name
            workdir.mkdir()
            server = (MailsiftServer if name == "mailsift" else DovecotServer)(workdir, root, users + [big_user])
            if isinstance(server, DovecotServer):
                server.dc.mail_root = root  # copied above; the harness chowns it for Dovecot
            server.start()
            servers[name] = server
        for name, server in servers.items():
            asyncio.run(load(server.port, users, 2.0, "session", extra))  # warm-up, untimed
            if args.idle:
                results[name]["idle_kb"] = asyncio.run(idle_memory(server, server.port, users, args.idle))
                print(f"{name}: {results[name]['idle_kb']:.0f} KB per idle connection", flush=True)
        for mix in mixes:
            for rnd in range(args.rounds):
                for name in (names if rnd % 2 == 0 else names[::-1]):
                    server = servers[name]
                    ops, cpu, sys_cpu, client_cpu, errs = asyncio.run(
                        load(server.port, users, args.seconds, mix, extra, server.pids))
                    rounds[name][mix].append({"ops": ops, "cpu": cpu, "sys": sys_cpu, "client_cpu": client_cpu,
                                              "errors": len(errs)})
                    errors[name][mix] += errs
                    print(f"round {rnd + 1}: {name}: {mix}: {ops:.0f} operations/s (server CPU {cpu:.2f} cores, "
                          f"{1000 * cpu / ops:.2f} ms per operation, this client {client_cpu:.2f} cores), "
                          f"{len(errs)} protocol errors", flush=True)
                if len(names) == 2:
                    m, d = rounds["mailsift"][mix][-1], rounds["dovecot"][mix][-1]
                    print(f"round {rnd + 1}: {mix}: ratio {m['ops'] / d['ops']:.2f}", flush=True)
        for name, server in servers.items():
            if args.big:
                warm, sel, fetch, n = asyncio.run(big_mailbox(server.port, big_user))
                results[name].update(warm=warm, select=sel, fetch=fetch, fetched=n)
                print(f"{name}: first login+select {warm:.2f}s, SELECT {sel:.3f}s, UID FETCH 1:* (FLAGS) "
                      f"{fetch:.3f}s ({n} responses)", flush=True)
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(base, ignore_errors=True)

    def med(name: str, mix: str, key: str) -> float:
        return median([r[key] for r in rounds[name][mix]])

    def ms_per_op(name: str, mix: str) -> float:
        return median([1000 * r["cpu"] / r["ops"] for r in rounds[name][mix]])

    print()
    print(f"medians of {args.rounds} round(s)")
    print(f"{'':38}" + "".join(f"{n:>12}" for n in names))
    for mix in mixes:
        def row(label: str, fmt: str, value: Callable[[str], float], note: str = "") -> None:
            print(f"{mix + ': ' + label:38}" + "".join(format(value(n), fmt).rjust(12) for n in names) + note)

        ratio = ""
        if len(names) == 2:
            # each round's pair ran back to back: their ratio is less moved by the host's drift
            ratios = [m["ops"] / d["ops"] for m, d in zip(rounds["mailsift"][mix], rounds["dovecot"][mix])]
            ratio = (f"   ratio {median(ratios):.2f} (goal >= 1.0; median of the rounds' ratios: "
                     + " ".join(f"{r:.2f}" for r in ratios) + ")")
        row("operations/s", ".0f", lambda n: med(n, mix, "ops"), ratio)
        row("server CPU, cores", ".2f", lambda n: med(n, mix, "cpu"),
            "   (bench client: " + " / ".join(f"{med(n, mix, 'client_cpu'):.2f}" for n in names) + " cores)")
        row("of which kernel, cores", ".2f", lambda n: med(n, mix, "sys"))
        row("server CPU ms per operation", ".2f", lambda n: ms_per_op(n, mix))
        row("protocol errors", ".0f", lambda n: sum(r["errors"] for r in rounds[n][mix]), "   (all rounds)")
    if args.big:
        r = results
        print(f"{'big: first LOGIN+SELECT (indexing)':38}" + "".join(f"{r[n]['warm']:12.2f}" for n in names))
        print(f"{'big: SELECT s':38}" + "".join(f"{r[n]['select']:12.3f}" for n in names)
              + f"   (goal <= 1 s, {args.big} messages)")
        print(f"{'big: UID FETCH 1:* (FLAGS) s':38}" + "".join(f"{r[n]['fetch']:12.3f}" for n in names)
              + "   (goal <= 2 s, " + " / ".join(str(int(r[n]['fetched'])) for n in names) + " responses)")
    if args.idle:
        print(f"{'memory per idle connection KB':38}" + "".join(f"{results[n]['idle_kb']:12.0f}" for n in names)
              + f"   ({args.idle} connections)")
    for name in errors:
        for mix, errs in errors[name].items():
            for e in sorted(set(errs))[:5]:
                print(f"{name} {mix} error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
