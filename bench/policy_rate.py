"""Policy requests per second over a unix socket with 20 concurrent clients:
`mailsift policy` on SQLite and on Redis, against postgrey (Debian's package), all fed the
same requests in the same run.

    .venv/bin/python bench/policy_rate.py [--clients 20] [--requests 500]

Each client holds one connection and sends its requests one at a time, waiting for each
reply, as Postfix's smtpd does. The request mix: 60% first sight of a new triplet (a store
write and a DEFER), 40% a retry of a triplet seen before (a store read and a DEFER).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from harness.procs import Daemon, unix_ready, wait_for  # noqa: E402
from harness.redis import RedisServer  # noqa: E402

MAILSIFT = str(ROOT / ".venv" / "bin" / "mailsift")
POSTGREY = "/usr/sbin/postgrey"
FIRST_OCTETS = [n for n in range(1, 224) if n not in (10, 127)]  # no loopback, no private


def make_requests(clients: int, per_client: int, seed: int = 1) -> list[list[bytes]]:
    rng = random.Random(seed)
    seen: list[tuple[str, str, str]] = []
    out: list[list[bytes]] = []
    for c in range(clients):
        reqs = []
        for i in range(per_client):
            if seen and rng.random() < 0.4:
                addr, sender, rcpt = rng.choice(seen)
            else:
                addr = f"{rng.choice(FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                sender = f"user{rng.randrange(10**6)}@sender{rng.randrange(1000)}.test"
                rcpt = f"rcpt{rng.randrange(200)}@example.test"
                seen.append((addr, sender, rcpt))
            attrs = {
                "request": "smtpd_access_policy", "protocol_state": "RCPT", "protocol_name": "ESMTP",
                "client_address": addr, "client_name": "unknown", "reverse_client_name": "unknown",
                "helo_name": "mail.sender.test", "sender": sender, "recipient": rcpt,
                "recipient_count": "0", "queue_id": "", "instance": f"{c:x}.{i:x}.0", "size": "0",
                "etrn_domain": "", "stress": "", "sasl_method": "", "sasl_username": "",
                "sasl_sender": "", "ccert_subject": "", "ccert_issuer": "", "ccert_fingerprint": "",
                "encryption_protocol": "", "encryption_cipher": "", "encryption_keysize": "0",
            }
            reqs.append("".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n")
        out.append(reqs)
    return out


async def _client(path: str, reqs: list[bytes], actions: Counter[str]) -> None:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        for req in reqs:
            writer.write(req)
            reply = await reader.readuntil(b"\n\n")
            actions[reply.split(b" ", 1)[0].split(b"\n", 1)[0].decode()] += 1
    finally:
        writer.close()


async def _run_clients(path: str, batches: list[list[bytes]]) -> tuple[float, Counter[str]]:
    actions: Counter[str] = Counter()
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(path, reqs, actions) for reqs in batches))
    return time.perf_counter() - t0, actions


def measure(path: str, batches: list[list[bytes]], warmup: list[list[bytes]]) -> tuple[float, Counter[str]]:
    asyncio.run(_run_clients(path, warmup))
    return asyncio.run(_run_clients(path, batches))


def start_mailsift(work: Path, name: str, db: str) -> tuple[Daemon, str]:
    sock = work / f"{name}.sock"
    d = Daemon([MAILSIFT, "policy", "--socket", f"unix:{sock}", "--db", db, "--log-level", "WARNING"],
               work / f"{name}.log").start()
    wait_for(lambda: unix_ready(sock) or (not d.alive() and _died(d)), 20, what=f"mailsift policy ({name})")
    return d, str(sock)


def start_postgrey(work: Path) -> tuple[Daemon, str]:
    pg = pwd.getpwnam("postgrey")
    pgdir = work / "postgrey"
    pgdir.mkdir()
    os.chown(pgdir, pg.pw_uid, pg.pw_gid)
    sock = pgdir / "postgrey.sock"
    d = Daemon([POSTGREY, f"--unix={sock}", f"--dbdir={pgdir}", "--delay=300",
                "--listen-queue-size=64"], work / "postgrey.log").start()
    wait_for(lambda: unix_ready(sock) or (not d.alive() and _died(d)), 30, what="postgrey")
    return d, str(sock)


def _died(d: Daemon) -> bool:
    raise RuntimeError(f"{d.argv[0]} exited:\n{d.log()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=500, help="requests per client")
    args = ap.parse_args()

    batches = make_requests(args.clients, args.requests)
    warmup = make_requests(args.clients, 10, seed=2)
    total = sum(len(b) for b in batches)
    work = Path(tempfile.mkdtemp(prefix="mailsift-bench-policy-", dir="/tmp"))
    work.chmod(0o755)
    daemons: list[Daemon] = []
    redis: RedisServer | None = None
    results: dict[str, tuple[float, Counter[str]]] = {}
    try:
        d, sock = start_mailsift(work, "sqlite", f"sqlite:{work}/greylist.sqlite")
        daemons.append(d)
        results["mailsift sqlite"] = measure(sock, batches, warmup)
        d.stop()

        redis = RedisServer(work / "redis").start()
        d, sock = start_mailsift(work, "redis", redis.url)
        daemons.append(d)
        results["mailsift redis"] = measure(sock, batches, warmup)
        d.stop()

        if os.path.exists(POSTGREY):
            d, sock = start_postgrey(work)
            daemons.append(d)
            results["postgrey"] = measure(sock, batches, warmup)
            d.stop()
        else:
            print("postgrey not installed: apt-get install postgrey")
    finally:
        for d in daemons:
            d.stop()
        if redis is not None:
            redis.stop()
        shutil.rmtree(work, ignore_errors=True)

    print(f"policy requests over a unix socket, {args.clients} concurrent clients, "
          f"{total} requests each run (60% new triplets, 40% retries), {os.cpu_count()} CPUs")
    base = results.get("postgrey")
    for name, (secs, actions) in results.items():
        rate = total / secs
        ratio = f"  {rate / (total / base[0]):5.1f}x postgrey" if base else ""
        acts = ", ".join(f"{k} {v}" for k, v in sorted(actions.items()))
        print(f"  {name:16s} {rate:9.0f} req/s  ({secs:6.2f} s){ratio}   [{acts}]")
    sqlite_rate = total / results["mailsift sqlite"][0]
    print(f"target >= 2000 req/s with SQLite: {'met' if sqlite_rate >= 2000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
