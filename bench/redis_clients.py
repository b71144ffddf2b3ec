"""The greylist's Redis traffic through our own pipelining RESP client (mailsift/resp.py) and
through redis-py's asyncio client (when it is installed: mailsift does not depend on it),
against one private redis-server, in one run.

    python bench/redis_clients.py [--clients 20] [--requests 2000] [--rounds 3]

Each of `clients` concurrent tasks does `requests` policy-like steps: one MGET of a triplet and
a client key, then a SET ... EX of the triplet (what RedisStore does for a first sight), waiting
for each reply, as the policy service does for one smtpd connection.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from harness.redis import RedisServer  # noqa: E402


async def steps(call, clients: int, requests: int) -> float:  # type: ignore[no-untyped-def]
    async def one(c: int) -> None:
        for i in range(requests):
            key = f"mailsift:greylist:t:192.0.2.{c}\nsender{i}@example.net\nrcpt@example.test"
            await call("MGET", key, f"mailsift:greylist:c:192.0.2.{c}")
            await call("SET", key, f"{time.time()!r} {time.time()!r} 0", "EX", 3600)

    start = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    return clients * requests / (time.perf_counter() - start)


async def with_redis_py(url: str, clients: int, requests: int, args_max: int = 64) -> float:
    import redis.asyncio as aioredis

    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=args_max, timeout=2.0, decode_responses=True)
    r = aioredis.Redis(connection_pool=pool)
    try:
        return await steps(r.execute_command, clients, requests)
    finally:
        await r.aclose()
        await pool.aclose()


async def with_resp(url: str, clients: int, requests: int) -> float:
    from mailsift.resp import RespClient, parse_redis_url

    c = RespClient(parse_redis_url(url))
    try:
        return await steps(c.command, clients, requests)
    finally:
        await c.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000, help="steps per client")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="redis-clients-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            print(f"{args.clients} concurrent clients x {args.requests} steps (MGET + SET EX), redis-server on loopback")
            for n in range(args.rounds):
                rate = asyncio.run(with_resp(server.url, args.clients, args.requests))
                print(f"round {n + 1}: own RESP client (1 connection):   {rate:8.0f} steps/s")
                if importlib.util.find_spec("redis") is not None:
                    rate = asyncio.run(with_redis_py(server.url, args.clients, args.requests))
                    print(f"round {n + 1}: redis-py asyncio (pool of 64):    {rate:8.0f} steps/s")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
