"""Mail is never lost: crashes inside a delivery, a duplicate whose first copy is gone, and an
index that turns corrupt while `mailsift serve` runs.

The crash points are real SIGKILLs of the real server: `MAILSIFT_CRASH_AT=POINT` in its
environment makes it kill itself there (store/api.py `_crash_point`)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from harness.procs import wait_for
from lmtp_wire import LMTPWire
from mailsift.store import maildir as md
from mailsift.store.api import INBOX, Store

pytestmark = pytest.mark.integration

USER = "alice@example.test"
MESSAGE = b"From: s@remote.test\r\nTo: alice@example.test\r\nSubject: keep me\r\n\r\nthe only copy\r\n"


def files(maildir: Path, *subs: str) -> list[Path]:
    return [p for sub in subs for p in sorted((maildir / sub).iterdir())]


def copies_on_disk(maildir: Path) -> int:
    return sum(1 for p in files(maildir, "new", "cur") if p.read_bytes().endswith(b"the only copy\n"))


def send(srv) -> str:
    c = LMTPWire(srv.lmtp_addr)
    try:
        c.cmd("LHLO test")
        _rr, dr = c.transaction("s@remote.test", [USER], MESSAGE)
        assert len(dr) == 1
        return dr[0].text
    finally:
        c.close()


def crash_during_delivery(srv, point: str) -> None:
    """Deliver once with the server set to kill itself at `point`; the client gets no reply."""
    srv.env = {**os.environ, "MAILSIFT_CRASH_AT": point}
    srv.start()
    with pytest.raises((ConnectionError, OSError)):
        send(srv)
    wait_for(lambda: not srv.daemon.alive(), 10, what="the server to die at the crash point")
    assert f"MAILSIFT_CRASH_AT={point}" in srv.log()
    srv.env = None


@pytest.mark.parametrize("point", ["deliver-committed", "deliver-done"])
def test_kill9_inside_delivery_then_retry_stores_once(store_server, point: str) -> None:
    srv = store_server(users={USER: "pw"}, start=False)
    crash_during_delivery(srv, point)
    maildir = srv.maildir(USER)
    if point == "deliver-committed":  # indexed, still in tmp/: the next open rolls it forward
        assert len(files(maildir, "tmp")) == 1 and copies_on_disk(maildir) == 0
    srv.start()
    reply = send(srv)  # Postfix's retry: it never saw a reply
    assert reply.startswith("250 "), reply
    assert copies_on_disk(maildir) == 1, files(maildir, "new", "cur", "tmp")
    assert files(maildir, "tmp") == []
    srv.stop()
    box = Store(srv.mail_root).mailbox(USER)
    assert [m.size for m in box.list(INBOX)] == [len(box.read(INBOX, 1))]


def test_duplicate_whose_first_copy_is_gone_is_stored_again(store_server) -> None:
    """The delivery record says "already delivered" but the file is not there (a power loss took
    the unsynced tmp/ entry, or anything else removed it): the retry must store the message,
    never answer 250 (duplicate) for mail that is not on disk."""
    srv = store_server(users={USER: "pw"}, start=False)
    crash_during_delivery(srv, "deliver-committed")
    maildir = srv.maildir(USER)
    [orphan] = files(maildir, "tmp")
    orphan.unlink()
    srv.start()
    reply = send(srv)
    assert reply.startswith("250 ") and "duplicate" not in reply, reply
    assert copies_on_disk(maildir) == 1
    again = send(srv)  # a second retry now is a duplicate of a copy that exists
    assert again.startswith("250 ") and "duplicate" in again, again
    assert copies_on_disk(maildir) == 1


def test_tmp_entry_is_durable_before_the_index_points_at_it(tmp_path: Path, monkeypatch) -> None:
    """deliver: file fsync, tmp/ fsync, then the index commit, then rename and new/ fsync."""
    box = Store(tmp_path / "mail").mailbox(USER)
    trail: list[str] = []
    real_fsync_dir = md.fsync_dir

    def fsync_dir(path: Path) -> None:
        trail.append(f"fsync {Path(path).name}")
        real_fsync_dir(path)

    monkeypatch.setattr(md, "fsync_dir", fsync_dir)
    box._db.conn.set_trace_callback(lambda sql: trail.append(" ".join(sql.split()[:3]).upper()))
    box.deliver(MESSAGE, dedup_key="digest-1")
    insert = next(i for i, t in enumerate(trail) if t.startswith("INSERT INTO MESSAGES"))
    commit = next(i for i, t in enumerate(trail) if i > insert and t == "COMMIT")
    assert "fsync tmp" in trail[:insert], trail
    assert "fsync new" in trail[commit:], trail


def corrupt_index(maildir: Path) -> None:
    """Garbage over the index, its WAL and its shared memory, in place (same inodes), as a
    disk fault or a stray writer would leave them under the running server."""
    for suffix in ("", "-wal", "-shm"):
        p = maildir / f"mailsift-index.sqlite3{suffix}"
        if p.exists():
            size = p.stat().st_size
            with open(p, "r+b") as fh:
                fh.write((b"garbage!" * (size // 8 + 1))[:size])


def test_index_corrupted_while_running_is_rebuilt_without_restart(store_server) -> None:
    srv = store_server(users={USER: "pw"})
    maildir = srv.maildir(USER)
    assert send(srv).startswith("250 ")  # the mailbox is open in the server
    corrupt_index(maildir)
    pid = srv.daemon.pid
    for n in range(2, 4):
        c = LMTPWire(srv.lmtp_addr)
        c.cmd("LHLO test")
        _rr, dr = c.transaction("s@remote.test", [USER], MESSAGE.replace(b"keep me", b"after %d" % n))
        c.close()
        assert dr[0].code == 250, (dr, srv.log()[-2000:])
    assert srv.daemon.alive() and srv.daemon.pid == pid
    assert re.search(r"index .*rebuilt", srv.log()), srv.log()[-2000:]
    assert list(maildir.glob("mailsift-index.sqlite3.broken-*"))
    box = Store(srv.mail_root).mailbox(USER)
    subjects = sorted(re.search(rb"Subject: ([^\r]*)", box.read(INBOX, m.uid)).group(1) for m in box.list(INBOX))
    assert subjects == [b"after 2", b"after 3", b"keep me"]


def test_index_replaced_by_another_process_is_reopened(tmp_path: Path) -> None:
    """A second process (an IMAP worker) rebuilt the index: this one follows, and both agree."""
    root = tmp_path / "mail"
    first = Store(root).mailbox(USER)
    first.deliver(MESSAGE)
    corrupt_index(first.path)
    second = Store(root).mailbox(USER)  # opens, finds it broken, rebuilds it
    second.deliver(MESSAGE.replace(b"keep me", b"second"))
    first.deliver(MESSAGE.replace(b"keep me", b"first"))
    assert len(first.list(INBOX)) == 3
    second.sync()
    assert [m.uid for m in second.list(INBOX)] == [m.uid for m in first.list(INBOX)]
    assert len(list(first.path.glob("mailsift-index.sqlite3.broken-*"))) == 1


def test_index_removed_under_a_running_process_is_rebuilt(tmp_path: Path, monkeypatch) -> None:
    """Each locked operation (at most once per INDEX_CHECK_INTERVAL) checks that the index file
    is still the one it opened; here it was deleted, so the next delivery rebuilds it."""
    from mailsift.store import api

    monkeypatch.setattr(api, "INDEX_CHECK_INTERVAL", 0.0)
    root = tmp_path / "mail"
    first = Store(root).mailbox(USER)
    first.deliver(MESSAGE)
    for suffix in ("", "-wal", "-shm"):
        (first.path / f"mailsift-index.sqlite3{suffix}").unlink(missing_ok=True)
    first.deliver(MESSAGE.replace(b"keep me", b"second"))
    assert (first.path / "mailsift-index.sqlite3").exists()
    other = Store(root).mailbox(USER)  # another process opening the mailbox now: the same index
    assert other.status(INBOX).uidvalidity == first.status(INBOX).uidvalidity
    assert len(other.list(INBOX)) == 2
    assert [m.uid for m in other.list(INBOX)] == [m.uid for m in first.list(INBOX)]
