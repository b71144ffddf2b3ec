"""The Redis side of sharing a model (mailsift.resp; every step is one command or one Lua script).

    mailsift:share:events       stream of learn events: id, digest, label, source, host, raw
    mailsift:share:seen:ID      an event id Redis has taken (7 days): the append is idempotent
    mailsift:share:lease        the trainer's id, with a TTL the trainer renews
    mailsift:share:lease-wanted the id of a one-off trainer (`mailsift retrain`) waiting for the
                                lease, with a TTL it renews: the holder lets the lease go, and
                                no other trainer takes it meanwhile
    mailsift:share:model        hash: version, sha256, meta (JSON), data (the model's bytes),
                                applied (the last stream id the published model has learned)

Only the lease holder publishes: the publish script checks the lease and that the version grows
in the same step, then trims the stream up to what the model has learned.
"""

from __future__ import annotations

import hashlib
import json
import socket
from dataclasses import dataclass
from typing import Any

from mailsift.share.outbox import Event

PREFIX = "mailsift:share:"
EVENTS = PREFIX + "events"
LEASE = PREFIX + "lease"
WANTED = PREFIX + "lease-wanted"
MODEL = PREFIX + "model"
SEEN_SECONDS = 7 * 86400

_APPEND = """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[7]) then
  return redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'digest', ARGV[2], 'label', ARGV[3],
                    'source', ARGV[4], 'host', ARGV[5], 'raw', ARGV[6])
end
return false
"""

_CLAIM = """
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_LEASE = """
local wanted = redis.call('GET', KEYS[2])
if wanted and wanted ~= ARGV[1] then
  if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
  return 0
end
""" + _CLAIM

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[2], 'version') or '0')
if tonumber(ARGV[2]) <= cur then return -1 end
if ARGV[7] ~= '' and cur > tonumber(ARGV[7]) then return -2 end
redis.call('HSET', KEYS[2], 'version', ARGV[2], 'sha256', ARGV[3], 'meta', ARGV[4], 'data', ARGV[5],
           'applied', ARGV[6])
if ARGV[6] ~= '0-0' then redis.call('XTRIM', KEYS[3], 'MINID', ARGV[6]) end
return 1
"""


class ChecksumError(Exception):
    """A published model whose bytes do not match its checksum."""


@dataclass(frozen=True)
class Published:
    version: int
    sha256: str
    meta: dict[str, Any]
    data: bytes
    applied: str


@dataclass(frozen=True)
class StreamEvent:
    stream_id: str
    id: str
    digest: str
    label: str
    source: str
    host: str
    raw: bytes


def trainer_id() -> str:
    import os
    import uuid

    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _flat(items: list[bytes]) -> dict[bytes, bytes]:
    return {items[i]: items[i + 1] for i in range(0, len(items) - 1, 2)}


class Channel:
    """Raises mailsift.resp.RespError when Redis is unreachable, times out or refuses."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        from mailsift.resp import SyncRespClient

        self.url = url
        self.c = SyncRespClient(url, timeout=timeout, decode=False)
        self.host = socket.gethostname()

    def close(self) -> None:
        self.c.close()

    def _eval(self, script: str, keys: list[str], args: list[str | bytes | int]) -> object:
        return self.c.command("EVAL", script, len(keys), *keys, *args)

    # -- events ---------------------------------------------------------------------------------
    def append(self, event: Event) -> bool:
        """Add one event to the stream; False when Redis had taken its id already."""
        got = self._eval(_APPEND, [EVENTS, PREFIX + "seen:" + event.id],
                         [event.id, event.digest, event.label, event.source, self.host, event.raw, SEEN_SECONDS])
        return got is not None

    def events_after(self, stream_id: str, count: int = 500) -> list[StreamEvent]:
        """Stream entries after `stream_id` ("0-0": from the start), oldest first."""
        start = "(" + stream_id if stream_id != "0-0" else "-"
        rows = self.c.command("XRANGE", EVENTS, start, "+", "COUNT", count) or []
        out = []
        for sid, fields in rows:
            f = _flat(fields)

            def s(k: bytes) -> str:
                return f.get(k, b"").decode(errors="replace")
            out.append(StreamEvent(sid.decode(), s(b"id"), s(b"digest"), s(b"label"), s(b"source"), s(b"host"),
                                   f.get(b"raw", b"")))
        return out

    def pending_events(self) -> int:
        return int(self.c.command("XLEN", EVENTS))

    # -- the lease ------------------------------------------------------------------------------
    def hold_lease(self, me: str, ttl: float) -> bool:
        """Take the lease when it is free, renew it when it is ours; True while we hold it. While
        another trainer wants it (want_lease), let it go instead and return False."""
        return bool(self._eval(_LEASE, [LEASE, WANTED], [me, max(1, int(ttl * 1000))]))

    def want_lease(self, me: str, ttl: float) -> bool:
        """Ask the lease's holder to let it go to `me` (for `ttl` s, renewed by calling again);
        False when another trainer is waiting for it already."""
        return bool(self._eval(_CLAIM, [WANTED], [me, max(1, int(ttl * 1000))]))

    def unwant_lease(self, me: str) -> None:
        self._eval(_RELEASE, [WANTED], [me])

    def release_lease(self, me: str) -> None:
        self._eval(_RELEASE, [LEASE], [me])

    def lease_holder(self) -> str | None:
        v = self.c.command("GET", LEASE)
        return v.decode() if v is not None else None

    # -- versions -------------------------------------------------------------------------------
    def published_version(self) -> int:
        v = self.c.command("HGET", MODEL, "version")
        return int(v) if v is not None else 0

    def published(self) -> Published | None:
        """The newest published model, its checksum verified; None when nothing is published."""
        h = _flat(self.c.command("HGETALL", MODEL) or [])
        if not h or b"version" not in h:
            return None
        data = h.get(b"data", b"")
        sha = h.get(b"sha256", b"").decode()
        if hashlib.sha256(data).hexdigest() != sha:
            raise ChecksumError(f"published model version {int(h[b'version'])} does not match its checksum")
        try:
            meta = json.loads(h.get(b"meta", b"{}"))
        except ValueError:
            meta = {}
        return Published(int(h[b"version"]), sha, meta, data, h.get(b"applied", b"0-0").decode())

    def applied(self) -> str:
        v = self.c.command("HGET", MODEL, "applied")
        return v.decode() if v is not None else "0-0"

    def publish(self, me: str, version: int, data: bytes, meta: dict[str, Any], applied: str,
                base: int | None = None) -> bool:
        """Publish `data` as `version` if we still hold the lease and it is newer; True when done.
        `base`: the published version this model was built on (installed, then learned on); a
        newer one published since (by a trainer that held the lease while this one had lost it)
        refuses the publication, which would drop what that version learned."""
        sha = hashlib.sha256(data).hexdigest()
        got = self._eval(_PUBLISH, [LEASE, MODEL, EVENTS],
                         [me, version, sha, json.dumps(meta, sort_keys=True), data, applied,
                          "" if base is None else base])
        return int(got) == 1  # type: ignore[call-overload]
