"""Several hosts, one model ([classifier] share): two `mailsift milter` (each with its own model
directory, as on two MX hosts), two `mailsift serve` stores (each with its own model directory)
and one real redis-server (an append-only file fsynced at every write, docs/scaling.md).

  1. A user's Junk move on store 1 changes the milters' verdict on a near-duplicate of that
     message on both MX hosts within 10 s.
  2. Redis is killed; Junk moves on both stores meanwhile wait in their outboxes; Redis starts
     again on the same port and directory: no learn event is lost (both near-duplicates turn
     spam on both milters, every model directory's learn record holds every moved message).
  3. The trainer (the store holding the lease) is killed -9: the other store takes the lease,
     and its Junk moves still reach both milters.
"""

from __future__ import annotations

import imaplib
import json
import re
import shutil
import smtplib
import sqlite3
import time
from pathlib import Path
from typing import Iterator

import pytest

from harness.procs import Daemon, free_port, tcp_ready, unix_ready, wait_for
from harness.redis import RedisServer
from milter_helpers import corpus_files
from milter_wire import MtaSide, message_commands, packet, parse_replies

pytestmark = [pytest.mark.integration]

USER, PASSWORD = "dana@example.test", "dana-pw"
N_TRAIN = 200
LEASE = 3.0          # [classifier] share_lease_seconds for this test
WITHIN = 10.0        # a Junk move reaches every milter within this many seconds


def body_of(raw: bytes) -> bytes:
    m = re.search(rb"\r?\n\r?\n", raw)
    return raw[m.end():] if m else b""


def near_duplicate(raw: bytes, n: int) -> tuple[list[tuple[str, str]], bytes]:
    """The same text again from another sender, one line added: headers and CRLF body."""
    headers = [("From", f"Other {n} <other{n}@outside.test>"), ("To", USER),
               ("Subject", f"again {n}"), ("Message-ID", f"<near-{n}@outside.test>")]
    body = body_of(raw).replace(b"\r\n", b"\n").replace(b"\n", b"\nPS\n", 1)
    return headers, body.replace(b"\n", b"\r\n")


def verdict(socket_path: Path, raw: bytes, n: int) -> str:
    """X-Spam-Status as the milter adds it for the near-duplicate of `raw`."""
    headers, body = near_duplicate(raw, n)
    mta = MtaSide(socket_path)
    try:
        mta.send(message_commands(headers, body, f"SH{n:04d}", mta.negotiate()))
        added, _changed, final = parse_replies(mta.replies())
        mta.send(packet(b"Q"))
    finally:
        mta.close()
    assert final == b"c", final
    return dict(added)["X-Spam-Status"]


def learned_label(dbpath: Path, raw: bytes) -> str | None:
    from mailsift.classifier.record import LearnRecord, message_digest

    with LearnRecord(dbpath) as rec:
        known = rec.get(message_digest(raw))
    return known[0] if known else None


def outbox_count(dbpath: Path) -> int:
    path = dbpath / "share" / "outbox.sqlite"
    if not path.exists():
        return 0
    db = sqlite3.connect(path, timeout=5)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox WHERE committed = 1").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


class Host:
    """One `mailsift serve` or `mailsift milter` with its own config and model directory."""

    def __init__(self, kind: str, name: str, workdir: Path, template: Path, redis_url: str, mailsift_bin: str,
                 users: Path | None = None) -> None:
        self.kind, self.name = kind, name
        self.dir = workdir / name
        self.dir.mkdir()
        self.model = self.dir / "models"
        shutil.copytree(template, self.model)
        config = (f'[classifier]\ndbpath = "{self.model}"\nshare = "{redis_url}"\n'
                  f"share_lease_seconds = {LEASE}\n")
        if kind == "milter":
            self.socket = self.dir / "milter.sock"
            config += f'[milter]\nsocket = "unix:{self.socket}"\nclamd = ""\n'
            ready = lambda: unix_ready(self.socket)  # noqa: E731
        else:
            assert users is not None
            self.imap_port, self.lmtp_port = free_port(), free_port()
            config += (f'[store]\nmail_root = "{self.dir / "mail"}"\nusers = "{users}"\n'
                       f'lmtp = "127.0.0.1:{self.lmtp_port}"\nimap = "127.0.0.1:{self.imap_port}"\n'
                       'pop3 = "off"\nlookup = "off"\nhostname = "imap.mailsift.test"\n'
                       "[feedback]\nsave_interval = 0.5\n")
            ready = lambda: tcp_ready("127.0.0.1", self.imap_port) and tcp_ready("127.0.0.1", self.lmtp_port)  # noqa: E731
        (self.dir / "mailsift.toml").write_text(config)
        argv = [mailsift_bin, kind, "--config", str(self.dir / "mailsift.toml"), "--log-level", "DEBUG"]
        self.daemon = Daemon(argv, self.dir / f"{kind}.log").start()
        self.daemon.wait_ready(ready, 60, what=f"{name} ({kind})")

    def log(self) -> str:
        return self.daemon.log()

    def junk(self, raw: bytes) -> None:
        """Deliver `raw` into the user's INBOX over LMTP, then MOVE it into Junk over IMAP."""
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail("sender@outside.test", [USER], raw)
        imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
        try:
            imap.login(USER, PASSWORD)
            imap.select("INBOX")
            uids = imap.uid("SEARCH", None, "ALL")[1][0].split()
            assert imap.uid("MOVE", uids[-1].decode(), "Junk")[0] == "OK"
            imap.logout()
        finally:
            try:
                imap.shutdown()
            except OSError:
                pass


@pytest.fixture
def template(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    from mailsift.classifier.learn import Learner

    d = tmp_path_factory.mktemp("share-template") / "models"
    ham = corpus_files(corpora, "spamassassin/easy_ham")[:N_TRAIN]
    spam = corpus_files(corpora, "spamassassin/spam")[:N_TRAIN]
    with Learner(d, source=None) as learner:
        learner.learn_labelled([(str(p), p.read_bytes(), "ham") for p in ham]
                               + [(str(p), p.read_bytes(), "spam") for p in spam])
        learner.save()
    return d


@pytest.fixture
def hosts(tmp_path: Path, template: Path, mailsift_bin: str) -> Iterator[dict[str, object]]:
    from mailsift.store.users import Users

    users = tmp_path / "users.db"
    Users(users).add(USER, PASSWORD)
    redis = RedisServer(tmp_path / "redis", persist=True).start()
    made: dict[str, object] = {"redis": redis}
    try:
        for name in ("store1", "store2"):
            made[name] = Host("serve", name, tmp_path, template, redis.url, mailsift_bin, users)
        for name in ("mx1", "mx2"):
            made[name] = Host("milter", name, tmp_path, template, redis.url, mailsift_bin)
        yield made
    finally:
        for name in ("mx1", "mx2", "store1", "store2"):
            host = made.get(name)
            if isinstance(host, Host):
                host.daemon.stop()
        for name in ("redis", "redis2"):
            if name in made:
                made[name].stop()  # type: ignore[attr-defined]


def lease_pid(redis_url: str) -> int | None:
    from mailsift.resp import SyncRespClient

    r = SyncRespClient(redis_url, timeout=2, decode=True)
    try:
        holder = r.command("GET", "mailsift:share:lease")
    finally:
        r.close()
    return int(holder.split(":")[1]) if holder else None


def test_a_junk_move_reaches_every_milter_through_redis(hosts: dict[str, object], corpora: Path) -> None:
    store1, store2 = hosts["store1"], hosts["store2"]
    mx1, mx2 = hosts["mx1"], hosts["mx2"]
    redis: RedisServer = hosts["redis"]  # type: ignore[assignment]
    assert isinstance(store1, Host) and isinstance(store2, Host) and isinstance(mx1, Host) and isinstance(mx2, Host)
    milters = [mx1, mx2]
    # Ham the model has not seen, each to be moved into Junk by a user.
    m1, m2, m3, m4 = [p.read_bytes() for p in corpus_files(corpora, "spamassassin/easy_ham_2")[:4]]
    for n, raw in enumerate((m1, m2, m3, m4)):
        for mx in milters:
            assert verdict(mx.socket, raw, n).startswith("No, "), (mx.name, n)

    def spam_everywhere(raw: bytes, n: int) -> bool:
        return all(verdict(mx.socket, raw, n).startswith("Yes, ") for mx in milters)

    # 1. One Junk move, Redis up.
    store1.junk(m1)
    moved = time.monotonic()
    wait_for(lambda: spam_everywhere(m1, 0), WITHIN, what="the near-duplicate turning spam on both milters")
    took = time.monotonic() - moved

    # 2. Redis killed: the moves wait in the stores' outboxes, and nothing is lost on restart.
    redis.kill9()
    store1.junk(m2)
    store2.junk(m3)
    wait_for(lambda: outbox_count(store1.model) >= 1 and outbox_count(store2.model) >= 1, 30,
             what="both stores queueing their learn events while Redis is down")
    for mx in milters:  # the milters keep scoring with the model they have
        assert verdict(mx.socket, m1, 0).startswith("Yes, ")
    hosts["redis2"] = RedisServer(redis.workdir, port=redis.port, persist=True).start()  # the fixture stops it
    wait_for(lambda: spam_everywhere(m2, 1) and spam_everywhere(m3, 2), WITHIN + 10,
             what="the moves made while Redis was down reaching both milters")
    for host in (store1, store2, mx1, mx2):
        wait_for(lambda: all(learned_label(host.model, raw) == "spam" for raw in (m1, m2, m3)), WITHIN,
                 what=f"{host.name}'s learn record holding every moved message")
        assert outbox_count(host.model) == 0, host.name

    # 3. The trainer killed: the other store takes the lease over and trains.
    trainer_pid = lease_pid(redis.url)
    stores = {store1.daemon.pid: store1, store2.daemon.pid: store2}
    assert trainer_pid in stores, (trainer_pid, list(stores))
    trainer = stores.pop(trainer_pid)
    survivor = next(iter(stores.values()))
    trainer.daemon.kill9()
    wait_for(lambda: lease_pid(redis.url) == survivor.daemon.pid, LEASE + 10, what="the lease moving to the other store")
    survivor.junk(m4)
    wait_for(lambda: spam_everywhere(m4, 3), WITHIN, what="the new trainer's model reaching both milters")
    for mx in milters:
        assert "model" in mx.log() and "installed model version" in mx.log()
    print(f"\nshare: a Junk move reached both milters in {took:.1f} s; lease moved from {trainer.name} to {survivor.name}")
