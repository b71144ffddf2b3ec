"""LMTP delivery rate through Postfix: `mailsift serve` against Dovecot's LMTP (Debian's
dovecot-lmtpd, a private instance on a free port), in one run.

    .venv/bin/python bench/lmtp_delivery.py [--messages 2000] [--sessions 20] [--size 5120]

For each peer in turn: a private Postfix whose virtual_transport is that LMTP server gets N
messages of SIZE bytes from `smtp-source -s 20` while the lmtp transport is held
(defer_transports = lmtp; not timed). Then the transport is released and the queue flushed; the
clock runs from the flush until every message is in the user's Maildir and the queue is empty.
Postfix's lmtp(8) uses up to `--sessions` parallel LMTP sessions (lmtp_destination_concurrency_limit).
Both peers fsync each message: mailsift always; Dovecot with mail_fsync = optimized (its default).
Dovecot with mail_fsync = never is run too, for reference. Then, without Postfix, the same N
messages go straight to each LMTP server from `--sessions` concurrent clients (the servers' own
rate, where Postfix is not the bottleneck). The machine is shared with other work:
figures are noisy; run once, report as measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.dovecot import DovecotInstance  # noqa: E402
from harness.postfix import PostfixInstance, make_workdir  # noqa: E402
from harness.procs import Daemon, free_port, tcp_ready, wait_for  # noqa: E402

USER = "bench@example.test"
DIRECT: dict[str, float] = {}
MAILSIFT = str(Path(sys.executable).parent / "mailsift")


def count_new(maildir: Path) -> int:
    try:
        return len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur"))
    except FileNotFoundError:
        return 0


def through_postfix(name: str, transport: str, delivered: Callable[[], int], n: int, sessions: int,
                    size: int) -> float:
    wd = make_workdir(f"bench-lmtp-{name}-")
    pf = PostfixInstance(wd, main={
        "virtual_transport": transport,
        "virtual_mailbox_domains": "example.test",
        "virtual_mailbox_maps": "static:OK",
        "defer_transports": "lmtp",
        "lmtp_destination_concurrency_limit": str(sessions),
        "lmtp_initial_destination_concurrency": str(sessions),
        "lmtp_destination_recipient_limit": "50",
        "default_process_limit": str(max(100, sessions * 2)),
        "in_flow_delay": "0",
    })
    try:
        pf.start()
        subprocess.run(["smtp-source", "-s", "20", "-l", str(size), "-m", str(n), "-f", "load@remote.test",
                        "-t", USER, "-c", f"{pf.host}:{pf.smtp_port}"], check=True, capture_output=True,
                       timeout=600)
        wait_for(lambda: len(pf.queue()) >= n, 300, interval=0.5, what=f"{n} messages queued")
        assert delivered() == 0
        pf.postconf({"defer_transports": ""})
        pf.reload()
        t0 = time.monotonic()
        pf.flush()
        wait_for(lambda: delivered() >= n, 900, interval=0.02, what=f"{n} delivered to {name}")
        elapsed = time.monotonic() - t0
        wait_for(lambda: not pf.queue(), 60, interval=0.2, what="queue empty")
        bad = [ln for ln in pf.log_text().splitlines()
               if ("status=deferred" in ln or "status=bounced" in ln) and "(deferred transport)" not in ln]
        if bad:
            print(f"  {name}: {len(bad)} deferred/bounced deliveries, e.g. {bad[0][-200:]}")
        return n / elapsed
    finally:
        pf.stop()
        shutil.rmtree(wd, ignore_errors=True)


async def _direct_client(port: int, count: int, size: int, tag: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await reader.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    await reply()
    writer.write(b"LHLO bench\r\n")
    await reply()
    body = (b"x" * 70 + b"\r\n") * max(1, size // 72)
    for i in range(count):
        writer.write(b"MAIL FROM:<load@remote.test>\r\nRCPT TO:<" + USER.encode() + b">\r\nDATA\r\n")
        await writer.drain()
        for _ in range(3):
            line = await reply()
            assert line[:1] in (b"2", b"3"), line
        writer.write(b"Subject: direct %d/%d\r\n\r\n" % (tag, i) + body + b".\r\n")
        await writer.drain()
        line = await reply()
        assert line.startswith(b"250"), line
    writer.write(b"QUIT\r\n")
    await writer.drain()
    writer.close()


def direct(port: int, n: int, sessions: int, size: int) -> float:
    """N messages straight over LMTP from `sessions` concurrent clients (no Postfix in between)."""
    async def run() -> float:
        t0 = time.monotonic()
        per = n // sessions
        await asyncio.gather(*(_direct_client(port, per, size, k) for k in range(sessions)))
        return per * sessions / (time.monotonic() - t0)
    return asyncio.run(run())


def bench_mailsift(n: int, sessions: int, size: int) -> float:
    wd = make_workdir("bench-mailsift-")
    port = free_port()
    config = wd / "mailsift.toml"
    config.write_text(
        "[store]\n"
        f'mail_root = "{wd}/mail"\nusers = "{wd}/users.db"\nlmtp = "127.0.0.1:{port}"\n'
        f'pop3 = "off"\nlookup = "off"\nhostname = "bench.mailsift.test"\n'
        f'[classifier]\ndbpath = "{wd}/models"\n'  # the learner's state here, not in the tree
        "[logging]\nlevel = \"WARNING\"\n")
    subprocess.run([MAILSIFT, "user", "--config", str(config), "add", USER, "--stdin"], input="bench-pw\n",
                   text=True, check=True, capture_output=True)
    daemon = Daemon([MAILSIFT, "serve", "--config", str(config)], wd / "serve.log").start()
    try:
        wait_for(lambda: tcp_ready("127.0.0.1", port), 30, what="mailsift serve")
        maildir = wd / "mail" / "example.test" / "bench"
        rate = through_postfix("mailsift", f"lmtp:inet:127.0.0.1:{port}", lambda: count_new(maildir), n,
                               sessions, size)
        DIRECT["mailsift"] = direct(port, n, sessions, size)
        return rate
    finally:
        daemon.stop()
        shutil.rmtree(wd, ignore_errors=True)


def bench_dovecot(n: int, sessions: int, size: int, fsync: str) -> float:
    wd = Path(tempfile.mkdtemp(prefix="bench-dovecot-"))
    dc = DovecotInstance(wd, users={USER: "bench-pw"}, imap=False, pop3=False, lmtp=True,
                         extra_conf=f"mail_fsync = {fsync}\n")
    try:
        dc.start()
        maildir = dc.maildir(USER)
        rate = through_postfix(f"dovecot-{fsync}", f"lmtp:inet:{dc.host}:{dc.lmtp_port}",
                               lambda: count_new(maildir), n, sessions, size)
        DIRECT[f"dovecot-{fsync}"] = direct(dc.lmtp_port, n, sessions, size)
        return rate
    finally:
        dc.stop()
        shutil.rmtree(wd, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--no-never", action="store_true", help="skip Dovecot with mail_fsync = never")
    args = ap.parse_args()
    print(f"LMTP delivery through Postfix: {args.messages} messages of {args.size} bytes, "
          f"up to {args.sessions} LMTP sessions, {os.cpu_count()} CPUs")
    ours = bench_mailsift(args.messages, args.sessions, args.size)
    print(f"  mailsift serve              {ours:8.1f} msg/s")
    theirs = bench_dovecot(args.messages, args.sessions, args.size, "optimized")
    print(f"  dovecot lmtp (fsync)        {theirs:8.1f} msg/s")
    if not args.no_never:
        never = bench_dovecot(args.messages, args.sessions, args.size, "never")
        print(f"  dovecot lmtp (fsync never)  {never:8.1f} msg/s   (reference only)")
    ratio = ours / theirs
    print(f"  mailsift / dovecot (fsync)  {ratio:8.2f}   (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})")
    print(f"Direct LMTP, no Postfix ({args.sessions} concurrent clients, same messages):")
    for name, rate in DIRECT.items():
        print(f"  {name:26s}  {rate:8.1f} msg/s")
    if "mailsift" in DIRECT and "dovecot-optimized" in DIRECT:
        print(f"  mailsift / dovecot (fsync)  {DIRECT['mailsift'] / DIRECT['dovecot-optimized']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
