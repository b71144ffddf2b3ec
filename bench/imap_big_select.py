"""SELECT of a big folder in-process: the store's select() and the view the IMAP session builds
from it (MailboxView.load, \\Recent, FLAGS, UNSEEN), CPU seconds per SELECT after a warm-up.

    .venv/bin/python bench/imap_big_select.py [--messages 100000] [--repeat 5] [--tree DIR ...]

With --tree, each tree (a mailsift checkout) is timed in a subprocess of its own, one after the
other on the same Maildir (A/B in one run); without, the tree that is imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_maildir(path: Path, n: int) -> None:
    """As bench/imap_load.py's big mailbox: 1 KB messages straight into cur/, every other Seen."""
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    data = b"From: a@example.test\r\nSubject: filler\r\n\r\n" + b"x" * 980 + b"\r\n"
    for i in range(n):
        flags = "S" if i % 2 == 0 else ""
        (path / "cur" / f"{1_700_000_000 + i}.M{i}P1.bench:2,{flags}").write_bytes(data)


def one_select(box, name: str):  # the session's cmd_select, without the wire
    from mailsift.protocols.imap import storecalls
    from mailsift.protocols.imap.mailboxview import MailboxView
    info, infos, floor, stamp = storecalls.select_nowait(box, name, False) \
        or storecalls.select_data(box, name, False)
    view = MailboxView(info.name, False, info.uidvalidity)
    view.stamp = stamp
    view.load(infos)
    view.recent = ({u for u in view.uids if u > floor} if not hasattr(view, "recent_above")
                   else view.recent_above(floor)) if floor is not None else set()
    lines = view.flag_lines()
    return view.exists, len(view.recent), view.first_unseen(), info.uidnext, lines


def child(root: str, repeat: int) -> None:
    from mailsift.store.api import Store
    import mailsift
    store = Store(root, hostname="bench")
    box = store.mailbox("big@example.test")
    t0 = time.process_time()
    first = one_select(box, "INBOX")
    warm = time.process_time() - t0
    times, nowait = [], 0
    from mailsift.protocols.imap import storecalls
    for _ in range(repeat):
        t0 = time.process_time()
        r = one_select(box, "INBOX")
        times.append(time.process_time() - t0)
        nowait += storecalls.select_nowait(box, "INBOX", True) is not None
    assert r[:4] == (first[0], 0, first[2], first[3]), (r[:4], first[:4])
    times.sort()
    print(f"{Path(mailsift.__file__).parents[1]}: exists {r[0]} unseen {r[2]} uidnext {r[3]} | "
          f"first SELECT {warm:.2f} s CPU | later SELECT CPU s: median {times[len(times)//2]:.4f} "
          f"min {times[0]:.4f} | select on the event loop: {nowait}/{repeat}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[])
    ap.add_argument("--root", help="(internal) mail root")
    args = ap.parse_args()
    if args.root:
        child(args.root, args.repeat)
        return 0
    work = Path(tempfile.mkdtemp(prefix="imap-big-"))
    try:
        seed = work / "seed"
        write_maildir(seed / "example.test" / "big", args.messages)
        for tree in args.tree or [None]:
            root = work / "root"
            shutil.rmtree(root, ignore_errors=True)
            shutil.copytree(seed, root)
            env = dict(os.environ, PYTHONPATH=tree) if tree else os.environ
            subprocess.run([sys.executable, __file__, "--root", str(root), "--repeat", str(args.repeat)],
                           env=env, check=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
