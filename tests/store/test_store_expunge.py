"""EXPUNGE answers once its messages' files have left cur/ and new/ (renamed into tmp/) and the
index says so; the files are unlinked after the answer, in the background (maildir.Unlinker).
A crash between the answer and the unlink leaves no visible message: the index rules, and the
next open of the mailbox removes what waited in tmp/."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mailsift.store import maildir as md
from mailsift.store.api import INBOX, Store
from store_harness import held

USER = "expunge@example.test"
TREE = str(Path(__file__).resolve().parents[2])


def files(box_path: Path) -> dict[str, list[str]]:
    return {sub: sorted(os.listdir(box_path / sub)) for sub in ("new", "cur", "tmp")}


def wait_until(cond, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.fixture
def world(tmp_path: Path):
    store = Store(tmp_path / "mail")
    box = store.mailbox(USER)
    for i in range(4):
        box.deliver(f"Subject: {i}\n\nbody {i}\n".encode())
    yield store, box, tmp_path / "mail"
    store.close()


def test_an_expunged_messages_file_is_gone_after_the_answer(world) -> None:
    store, box, _root = world
    keys = {m.uid: m.key for m in box.list(INBOX)}
    box.store_flags(INBOX, [2, 3], ["\\Deleted"], "add")
    assert box.expunge(INBOX) == [2, 3]
    on_disk = files(box.path)
    assert not any(keys[u] in n for u in (2, 3) for n in on_disk["new"] + on_disk["cur"])
    assert [m.uid for m in box.list(INBOX)] == [1, 4]
    assert wait_until(lambda: files(box.path)["tmp"] == [])  # the background unlink
    assert store.unlinker.wait_idle(10)
    # the other messages are untouched and readable
    assert box.read(INBOX, 4).endswith(b"body 3\r\n")


def test_a_crash_between_the_answer_and_the_unlink_leaves_no_visible_message(world) -> None:
    store, box, root = world
    store.close()
    code = textwrap.dedent("""
        import sys
        from mailsift.store.api import Store, INBOX
        box = Store(sys.argv[1]).mailbox(sys.argv[2])
        box.store_flags(INBOX, [1, 3], ["\\\\Deleted"], "add")
        box.expunge(INBOX)  # killed once committed, before the unlink is handed over
        print("not reached", flush=True)
    """)
    p = subprocess.run([sys.executable, "-c", code, str(root), USER], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": TREE, "MAILSIFT_CRASH_AT": "expunge-committed"},
                       timeout=60)
    assert p.returncode == -signal.SIGKILL and "not reached" not in p.stdout
    left = files(box.path)
    waiting = [n for n in left["tmp"] if n.startswith(md.EXPUNGED_PREFIX)]
    assert len(waiting) == 2 and len(left["new"]) + len(left["cur"]) == 2
    # another Maildir reader sees two messages; our index says two
    again = Store(root)
    try:
        other = again.mailbox(USER)
        assert [m.uid for m in other.list(INBOX)] == [2, 4]
        assert files(box.path)["tmp"] == []  # the open removed what waited in tmp/
        other.sync(INBOX, force=True)
        assert [m.uid for m in other.list(INBOX)] == [2, 4]  # nothing comes back
    finally:
        again.close()


def test_the_unlinker_is_bounded_and_unlinks_at_once_beyond_its_bound(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        p = tmp_path / f"f{i}"
        p.write_bytes(b"x")
        paths.append(str(p))
    u = md.Unlinker(max_pending=3)
    u.unlink(paths)  # more than it may hold: unlinked in this thread, before it returns
    assert os.listdir(tmp_path) == []
    (tmp_path / "g").write_bytes(b"y")
    u.unlink([str(tmp_path / "g"), str(tmp_path / "missing")])
    assert u.wait_idle(10) and os.listdir(tmp_path) == []
    u.close()
    (tmp_path / "h").write_bytes(b"z")
    u.unlink([str(tmp_path / "h")])  # after close(): at once
    assert os.listdir(tmp_path) == []


def test_expunge_nowait_acts_on_a_free_mailbox_and_leaves_the_rest_alone(world) -> None:

    from mailsift.store.api import NOWAIT_MAX_UIDS

    store, box, root = world
    before = box.stamp(INBOX)
    box.store_flags(INBOX, [1], ["\\Deleted"], "add")
    gone, b, a = box.expunge_nowait(INBOX)
    assert gone == [1] and a == (before[0], before[1] + 2, before[2]) and b == (a[0], a[1] - 1, a[2])
    assert [m.uid for m in box.list(INBOX)] == [2, 3, 4]
    # more messages to go than an event loop may rename: nothing done, a thread's call does it
    for i in range(NOWAIT_MAX_UIDS + 1):
        box.deliver(f"Subject: more {i}\n\nx\n".encode())
    many = [m.uid for m in box.list(INBOX)][3:]
    box.store_flags(INBOX, many, ["\\Deleted"], "add")
    stamp = box.stamp(INBOX)
    assert box.expunge_nowait(INBOX) is None and box.expunge_nowait(INBOX, many) is None
    assert box.stamp(INBOX) == stamp and len(box.list(INBOX)) == 3 + len(many)
    # a mailbox another process holds: nothing done
    other = Store(root)
    try:
        with held(other.mailbox(USER)):
            assert box.expunge_nowait(INBOX, many[:2]) is None
    finally:
        other.close()
    assert box.expunge(INBOX) == many
    assert store.unlinker.wait_idle(10) and files(box.path)["tmp"] == []
