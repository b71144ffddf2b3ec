"""Where the greylist lives: SQLite (default, embedded) or Redis (shared by several MX hosts).

Both store two kinds of record, each with a time to live after which it is purged:
- a triplet: when it was first seen, last seen, and whether it passed greylisting;
- a client network: how many times (at most one per hour) it passed, for auto_allow.

Every failure to reach or use the store is raised as `StoreError`; the caller answers DUNNO.
Timestamps come from the caller's clock, so a test clock works with both stores.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("mailsift.policy")


class StoreError(Exception):
    """The greylist store is unreachable or failed."""


@dataclass(frozen=True)
class TripletEntry:
    first_seen: float
    last_seen: float
    passed: bool


@dataclass(frozen=True)
class ClientEntry:
    count: int
    last_counted: float
    last_seen: float


class GreylistStore(Protocol):
    async def lookup(self, key: str, network: str) -> tuple[TripletEntry | None, ClientEntry | None]: ...
    async def get_triplet(self, key: str) -> TripletEntry | None: ...
    async def put_triplet(self, key: str, entry: TripletEntry, now: float, ttl: float) -> None: ...
    async def get_client(self, network: str) -> ClientEntry | None: ...
    async def put_client(self, network: str, entry: ClientEntry, now: float, ttl: float) -> None: ...
    async def purge(self, now: float) -> int: ...
    async def close(self) -> None: ...


def open_store(url: str) -> GreylistStore:
    """`sqlite:PATH` or `redis://HOST:PORT/N` (also `rediss://`, `unix://PATH?db=N`)."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:"):]
        if not path:
            raise ValueError("sqlite: needs a path, e.g. sqlite:/var/lib/mailsift/greylist.sqlite")
        return SqliteStore(path)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore(url)
    raise ValueError(f"unknown greylist store {url!r}: use sqlite:PATH or redis://HOST:PORT/N")


def check_store_url(url: str) -> None:
    if url.startswith("sqlite:") and url[len("sqlite:"):]:
        return
    if url.startswith(("redis://", "rediss://", "unix://")):
        from mailsift.resp import parse_redis_url
        parse_redis_url(url)
        return
    raise ValueError(f"db must be sqlite:PATH or redis://HOST:PORT/N, not {url!r}")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS triplet (
    key TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    passed INTEGER NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS triplet_expires ON triplet(expires);
CREATE TABLE IF NOT EXISTS client (
    network TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    last_counted REAL NOT NULL,
    last_seen REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS client_expires ON client(expires);
"""


class SqliteStore:
    """One SQLite file in WAL mode. Its statements take microseconds, so they run on the
    event loop; a lock held by another process is waited for at most `busy_ms`."""

    def __init__(self, path: str | Path, busy_ms: int = 250) -> None:
        self.path = Path(path)
        self.busy_ms = busy_ms
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, mode=0o750, exist_ok=True)
            fresh = not self.path.exists()
            db = sqlite3.connect(str(self.path), isolation_level=None, timeout=self.busy_ms / 1000,
                                 check_same_thread=False)
            if fresh:
                os.chmod(self.path, 0o600)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open greylist database {self.path}: {exc}") from exc
        self._db = db
        return db

    def _run(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"greylist database {self.path}: {exc}") from exc

    async def lookup(self, key: str, network: str) -> tuple[TripletEntry | None, ClientEntry | None]:
        return await self.get_triplet(key), await self.get_client(network)

    async def get_triplet(self, key: str) -> TripletEntry | None:
        rows = self._run("SELECT first_seen, last_seen, passed FROM triplet WHERE key=?", (key,))
        if not rows:
            return None
        first, last, passed = rows[0]
        return TripletEntry(first, last, bool(passed))

    async def put_triplet(self, key: str, entry: TripletEntry, now: float, ttl: float) -> None:
        self._run("INSERT OR REPLACE INTO triplet (key, first_seen, last_seen, passed, expires) "
                  "VALUES (?, ?, ?, ?, ?)",
                  (key, entry.first_seen, entry.last_seen, int(entry.passed), now + ttl))

    async def get_client(self, network: str) -> ClientEntry | None:
        rows = self._run("SELECT count, last_counted, last_seen FROM client WHERE network=?", (network,))
        if not rows:
            return None
        count, counted, seen = rows[0]
        return ClientEntry(count, counted, seen)

    async def put_client(self, network: str, entry: ClientEntry, now: float, ttl: float) -> None:
        self._run("INSERT OR REPLACE INTO client (network, count, last_counted, last_seen, expires) "
                  "VALUES (?, ?, ?, ?, ?)",
                  (network, entry.count, entry.last_counted, entry.last_seen, now + ttl))

    async def purge(self, now: float, batch: int = 2000) -> int:
        """Delete expired rows in small batches, letting requests run in between."""
        import asyncio

        n = 0
        for table, key in (("triplet", "key"), ("client", "network")):
            while True:
                try:
                    deleted = self._conn().execute(
                        f"DELETE FROM {table} WHERE {key} IN "
                        f"(SELECT {key} FROM {table} WHERE expires < ? LIMIT ?)", (now, batch)).rowcount
                except sqlite3.Error as exc:
                    raise StoreError(f"greylist database {self.path}: {exc}") from exc
                n += deleted
                if deleted < batch:
                    break
                await asyncio.sleep(0)
        return n

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class RedisStore:
    """Plain string keys with a TTL (Redis purges expired entries itself):
    `PREFIX t:NETWORK\\nSENDER\\nRECIPIENT` -> "first last passed",
    `PREFIX c:NETWORK` -> "count last_counted last_seen"."""

    def __init__(self, url: str, prefix: str = "mailsift:greylist:", timeout: float = 2.0) -> None:
        from mailsift.resp import RespClient, parse_redis_url

        self.url = url
        self.prefix = prefix
        self._client = RespClient(parse_redis_url(url), timeout=timeout)

    async def _call(self, *args: str | int) -> Any:
        from mailsift.resp import RespError
        try:
            return await self._client.command(*args)
        except RespError as exc:
            raise StoreError(str(exc)) from exc

    async def lookup(self, key: str, network: str) -> tuple[TripletEntry | None, ClientEntry | None]:
        """Both records in one round trip."""
        t, c = await self._call("MGET", self.prefix + "t:" + key, self.prefix + "c:" + network)
        return self._triplet(t), self._client_entry(c)

    async def get_triplet(self, key: str) -> TripletEntry | None:
        return self._triplet(await self._call("GET", self.prefix + "t:" + key))

    @staticmethod
    def _triplet(value: str | None) -> TripletEntry | None:
        if value is None:
            return None
        try:
            first, last, passed = value.split()
            return TripletEntry(float(first), float(last), passed == "1")
        except ValueError:
            log.warning("ignoring a damaged greylist entry in redis: %r", value)
            return None

    async def put_triplet(self, key: str, entry: TripletEntry, now: float, ttl: float) -> None:
        value = f"{entry.first_seen!r} {entry.last_seen!r} {int(entry.passed)}"
        await self._call("SET", self.prefix + "t:" + key, value, "EX", max(1, int(ttl)))

    async def get_client(self, network: str) -> ClientEntry | None:
        return self._client_entry(await self._call("GET", self.prefix + "c:" + network))

    @staticmethod
    def _client_entry(value: str | None) -> ClientEntry | None:
        if value is None:
            return None
        try:
            count, counted, seen = value.split()
            return ClientEntry(int(count), float(counted), float(seen))
        except ValueError:
            log.warning("ignoring a damaged client entry in redis: %r", value)
            return None

    async def put_client(self, network: str, entry: ClientEntry, now: float, ttl: float) -> None:
        value = f"{entry.count} {entry.last_counted!r} {entry.last_seen!r}"
        await self._call("SET", self.prefix + "c:" + network, value, "EX", max(1, int(ttl)))

    async def purge(self, now: float) -> int:
        return 0  # keys carry their own TTL

    async def close(self) -> None:
        await self._client.close()
