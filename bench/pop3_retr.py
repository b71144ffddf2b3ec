"""POP3 RETR throughput: `mailsift serve` against Dovecot's POP3 (Debian's dovecot-pop3d, a
private instance on a free port) on the same Maildir++ files, in one run.

    .venv/bin/python bench/pop3_retr.py [--messages 1000] [--users 4] [--rounds 3]

Setup (not timed): the first N messages of the SpamAssassin easy_ham corpus (real mail, 1-20 KB,
read in place from ../shared/corpora) are delivered with the store API into the INBOX of
each of U users under one mail root. Then, for each server in turn (mailsift first, then
Dovecot on the very same files):

  single   one session: login, RETR 1..N one at a time (each waits for its reply), QUIT
  parallel U sessions at once, one per user, each doing the same

Each is run `rounds` times after one untimed warm-up round (Dovecot builds its index on the
first login); the best round is reported. Plain POP3 on loopback for both (no TLS), the same
client code for both. The machine is shared with other work: figures are noisy.
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


def measure(name: str, port: int, users: list[str], rounds: int) -> dict[str, tuple[float, int, int]]:
    out: dict[str, tuple[float, int, int]] = {}
    for label, who in (("single", users[:1]), ("parallel", users)):
        asyncio.run(run_sessions(port, who))  # warm-up
        best = min((asyncio.run(run_sessions(port, who)) for _ in range(rounds)), key=lambda r: r[0])
        out[label] = best
        secs, msgs, octets = best
        print(f"  {name:9s} {label:8s} {len(who)} session(s): {msgs:6d} msgs {octets / 1e6:7.1f} MB in "
              f"{secs:6.2f} s = {msgs / secs:8.0f} msg/s {octets / secs / 1e6:7.1f} MB/s", flush=True)
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--users", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    if not CORPUS.is_dir():
        print(f"corpus {CORPUS} missing", file=sys.stderr)
        return 2
    if not shutil.which("dovecot") and not Path("/usr/sbin/dovecot").exists():
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

        # --- mailsift -------------------------------------------------------------------
        port = free_port()
        config = work / "mailsift.toml"
        config.write_text(
            "[store]\n"
            f'mail_root = "{mail_root}"\nusers = "{work / "users.db"}"\n'
            f'pop3 = "127.0.0.1:{port}"\nlmtp = "off"\nlookup = "off"\npop3s = "off"\n'
            'imap = "off"\nimaps = "off"\n[logging]\nlevel = "WARNING"\n')
        for u in users:
            r = subprocess.run([MAILSIFT, "user", "--config", str(config), "add", u, "--stdin"],
                               input=PASSWORD + "\n", capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 3
        daemon = Daemon([MAILSIFT, "serve", "--config", str(config)], work / "serve.log").start()
        try:
            wait_for(lambda: tcp_ready("127.0.0.1", port) or not daemon.alive(), 30, what="mailsift serve")
            if not daemon.alive():
                print(daemon.log(), file=sys.stderr)
                return 3
            print(f"mailsift serve (pid {daemon.pid}) on 127.0.0.1:{port}")
            ours = measure("mailsift", port, users, args.rounds)
        finally:
            daemon.stop()

        # --- Dovecot on the same files ------------------------------------------------------
        hand_to_dovecot(work, mail_root)
        dc = DovecotInstance(work / "dovecot", users={u: PASSWORD for u in users}, mail_root=mail_root,
                             imap=False, lmtp=False)
        dc.start()
        try:
            print(f"dovecot on 127.0.0.1:{dc.pop3_port}")
            try:
                theirs = measure("dovecot", dc.pop3_port, users, args.rounds)
            except RuntimeError:
                print(dc.log_text()[-3000:], file=sys.stderr)
                raise
        finally:
            dc.stop()

        print("\nmailsift / dovecot (RETR throughput, higher is better for mailsift):")
        for label in ("single", "parallel"):
            (s1, m1, o1), (s2, m2, o2) = ours[label], theirs[label]
            if m1 != m2:
                print(f"  WARNING: {label}: mailsift served {m1} messages, dovecot {m2}")
            print(f"  {label:8s} msg/s ratio {(m1 / s1) / (m2 / s2):5.2f}   "
                  f"MB/s ratio {(o1 / s1) / (o2 / s2):5.2f}   (octets on the wire: {o1} vs {o2})")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
