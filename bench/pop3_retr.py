"""POP3 RETR throughput: `mailsift serve` against Dovecot's POP3 (Debian's dovecot-pop3d, a
private instance on a free port) on the same Maildir++ files, in one run.

    .venv/bin/python bench/pop3_retr.py [--messages 1000] [--users 4] [--rounds 3]
        [--servers mailsift,dovecot] [--ab TREE]

Setup (not timed): the first N messages of the SpamAssassin easy_ham corpus (real mail, 1-20 KB,
read in place from ../shared/corpora) are delivered with the store API into the INBOX of
each of U users under one mail root. Then, for each server in turn (mailsift first, then
Dovecot on the very same files):

  single   one session: login, RETR 1..N one at a time (each waits for its reply), QUIT
  parallel U sessions at once, one per user, each doing the same

Each is run `rounds` times after one untimed warm-up round (Dovecot builds its index on the
first login); the best round is reported. Plain POP3 on loopback for both (no TLS), the same
client code for both. The machine is shared with other work: figures are noisy.

For mailsift the server's CPU time per RETR is printed too (the CPU time of the `serve`
process's threads over each timed round, from /proc, median of the rounds): what other work on
the machine hardly changes.
`--ab TREE` runs a second `mailsift serve` from the source tree TREE (e.g. a checkout of main)
on the same files and alternates their rounds, for an A/B of a change: compare the CPU per RETR.
`--servers mailsift` leaves Dovecot out.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.dovecot import DovecotInstance  # noqa: E402
from harness.procs import Daemon, free_port, tcp_ready, wait_for  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpora" / "spamassassin" / "easy_ham"
PASSWORD = "bench-password"
MAILSIFT = str(Path(sys.executable).parent / "mailsift")


class Client:
    """A minimal POP3 client on asyncio streams (the same for both servers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> "Client":
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        c = cls(reader, writer)
        await c.status()
        return c

    async def status(self) -> bytes:
        line = await self.reader.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"server said {line!r}")
        return line

    async def cmd(self, line: str) -> bytes:
        self.writer.write(line.encode() + b"\r\n")
        return await self.status()

    async def body(self) -> bytes:
        return await self.reader.readuntil(b"\r\n.\r\n")

    async def login(self, user: str) -> int:
        await self.cmd(f"USER {user}")
        await self.cmd(f"PASS {PASSWORD}")
        stat = await self.cmd("STAT")
        return int(stat.split()[1])

    async def retr_all(self, n: int) -> int:
        total = 0
        for i in range(1, n + 1):
            await self.cmd(f"RETR {i}")
            total += len(await self.body())
        return total

    async def quit(self) -> None:
        await self.cmd("QUIT")
        self.writer.close()
        await self.writer.wait_closed()


async def session(port: int, user: str) -> tuple[int, int]:
    c = await Client.connect(port)
    n = await c.login(user)
    octets = await c.retr_all(n)
    await c.quit()
    return n, octets


async def run_sessions(port: int, users: list[str]) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    results = await asyncio.gather(*(session(port, u) for u in users))
    elapsed = time.perf_counter() - t0
    return elapsed, sum(r[0] for r in results), sum(r[1] for r in results)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far, all its live threads (/proc schedstat: nanoseconds, where
    /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


Result = tuple[float, int, int]  # (seconds, messages, octets) of the best round


def one_round(port: int, who: list[str], pid: int | None, cpu: list[float]) -> Result:
    before = cpu_seconds(pid) if pid else 0.0
    r = asyncio.run(run_sessions(port, who))
    if pid:
        cpu.append(cpu_seconds(pid) - before)
    return r


def report(name: str, label: str, who: list[str], best: Result, cpu: list[float], msgs_per_round: int) -> None:
    secs, msgs, octets = best
    line = (f"  {name:9s} {label:8s} {len(who)} session(s): {msgs:6d} msgs {octets / 1e6:7.1f} MB in "
            f"{secs:6.2f} s = {msgs / secs:8.0f} msg/s {octets / secs / 1e6:7.1f} MB/s")
    if cpu:
        per = sorted(c / msgs_per_round * 1e6 for c in cpu)
        line += f"   server CPU/RETR {per[len(per) // 2]:6.1f} us (rounds {', '.join(f'{p:.1f}' for p in per)})"
    print(line, flush=True)


def measure(servers: list[tuple[str, int, int | None]], users: list[str], rounds: int) -> dict[str, dict[str, Result]]:
    """Each server (name, port, pid or None) in turn per round, for each load; the best round
    each, and the server CPU of every round (when the pid is known)."""
    out: dict[str, dict[str, Result]] = {name: {} for name, _p, _pid in servers}
    for label, who in (("single", users[:1]), ("parallel", users)):
        results: dict[str, list[Result]] = {name: [] for name, _p, _pid in servers}
        cpus: dict[str, list[float]] = {name: [] for name, _p, _pid in servers}
        for name, port, _pid in servers:
            asyncio.run(run_sessions(port, who))  # warm-up
        for i in range(rounds):
            order = servers if i % 2 == 0 else list(reversed(servers))
            for name, port, pid in order:
                results[name].append(one_round(port, who, pid, cpus[name]))
        for name, _port, _pid in servers:
            best = min(results[name], key=lambda r: r[0])
            out[name][label] = best
            report(name, label, who, best, cpus[name], best[1])
    return out


def deliver(mail_root: Path, users: list[str], messages: list[bytes]) -> None:
    from mailsift.store.api import Store

    store = Store(mail_root)
    for user in users:
        box = store.mailbox(user)
        for m in messages:
            box.deliver(m, folder="INBOX")
    store.close()


def hand_to_dovecot(work: Path, mail_root: Path) -> None:
    """Dovecot will not run mail processes as root: run as root, it reads and writes the
    Maildirs as the `mail` user. Give it the files (mailsift is done with them by then)."""
    if os.getuid() != 0:
        return
    try:
        pw = pwd.getpwnam("mail")
    except KeyError:
        return
    work.chmod(0o755)
    for path in [mail_root, *mail_root.rglob("*")]:
        os.chown(path, pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def start_mailsift(work: Path, mail_root: Path, users: list[str], name: str,
                   tree: Path | None) -> tuple[Daemon, int]:
    """`mailsift serve` with POP3 alone on a free port, from `tree` (PYTHONPATH) when given."""
    port = free_port()
    config = work / f"{name}.toml"
    config.write_text(
        "[store]\n"
        f'mail_root = "{mail_root}"\nusers = "{work / "users.db"}"\n'
        f'pop3 = "127.0.0.1:{port}"\nlmtp = "off"\nlookup = "off"\npop3s = "off"\n'
        'imap = "off"\nimaps = "off"\n[logging]\nlevel = "WARNING"\n'
        f'[classifier]\ndbpath = "{work / name}-models"\n')  # the learner's state here, not in the tree
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    if not (work / "users.db").exists():
        for u in users:
            r = subprocess.run([MAILSIFT, "user", "--config", str(config), "add", u, "--stdin"],
                               input=PASSWORD + "\n", capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
    daemon = Daemon([MAILSIFT, "serve", "--config", str(config)], work / f"{name}.log", env=env).start()
    wait_for(lambda: tcp_ready("127.0.0.1", port) or not daemon.alive(), 30, what="mailsift serve")
    if not daemon.alive():
        raise RuntimeError(daemon.log())
    print(f"{name} serve (pid {daemon.pid}, {tree or 'this tree'}) on 127.0.0.1:{port}")
    return daemon, port


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--servers", default="mailsift,dovecot", help="comma-separated: mailsift, dovecot")
    ap.add_argument("--ab", type=Path, help="also run mailsift from this source tree (A/B)")
    args = ap.parse_args()
    wanted = set(args.servers.split(","))
    if not CORPUS.is_dir():
        print(f"corpus {CORPUS} missing", file=sys.stderr)
        return 2
    if "dovecot" in wanted and not shutil.which("dovecot") and not Path("/usr/sbin/dovecot").exists():
        print("dovecot missing (apt-get install dovecot-pop3d)", file=sys.stderr)
        return 2
    files = sorted(p for p in CORPUS.iterdir() if p.is_file())[: args.messages]
    messages = [p.read_bytes() for p in files]
    users = [f"user{i}@example.test" for i in range(args.users)]
    work = Path(tempfile.mkdtemp(prefix="pop3bench-"))
    try:
        mail_root = work / "mail"
        t0 = time.perf_counter()
        deliver(mail_root, users, messages)
        print(f"setup: {len(messages)} messages x {len(users)} users "
              f"({sum(map(len, messages)) / 1e6:.1f} MB each) delivered in {time.perf_counter() - t0:.1f} s")

        # --- mailsift (and the tree to compare with) -----------------------------------------
        results: dict[str, dict[str, Result]] = {}
        if "mailsift" in wanted:
            daemons: list[Daemon] = []
            try:
                servers: list[tuple[str, int, int | None]] = []
                for name, tree in (("mailsift", None), ("mailsift-B", args.ab)):
                    if name == "mailsift-B" and tree is None:
                        continue
                    daemon, port = start_mailsift(work, mail_root, users, name, tree)
                    daemons.append(daemon)
                    servers.append((name, port, daemon.pid))
                results.update(measure(servers, users, args.rounds))
            finally:
                for daemon in daemons:
                    daemon.stop()

        # --- Dovecot on the same files ------------------------------------------------------
        if "dovecot" in wanted:
            hand_to_dovecot(work, mail_root)
            dc = DovecotInstance(work / "dovecot", users={u: PASSWORD for u in users}, mail_root=mail_root,
                                 imap=False, lmtp=False)
            dc.start()
            try:
                print(f"dovecot on 127.0.0.1:{dc.pop3_port}")
                try:
                    results.update(measure([("dovecot", dc.pop3_port, None)], users, args.rounds))
                except RuntimeError:
                    print(dc.log_text()[-3000:], file=sys.stderr)
                    raise
            finally:
                dc.stop()

        for a, b in (("mailsift", "dovecot"), ("mailsift", "mailsift-B")):
            if a not in results or b not in results:
                continue
            print(f"\n{a} / {b} (RETR throughput, higher is better for {a}):")
            for label in ("single", "parallel"):
                (s1, m1, o1), (s2, m2, o2) = results[a][label], results[b][label]
                if m1 != m2:
                    print(f"  WARNING: {label}: {a} served {m1} messages, {b} {m2}")
                print(f"  {label:8s} msg/s ratio {(m1 / s1) / (m2 / s2):5.2f}   "
                      f"MB/s ratio {(o1 / s1) / (o2 / s2):5.2f}   (octets on the wire: {o1} vs {o2})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
