"""SELECT of a big folder in-process: the store's select() and the view the IMAP session builds
from it (MailboxView.load, \\Recent, FLAGS, UNSEEN), CPU seconds per SELECT after a warm-up:
with the listing in the process's cache (a later SELECT in the same worker) and without (the
cache entry dropped first: a SELECT in a worker that has not listed the folder yet; the view of
the SELECT before stays alive meanwhile, as other sessions' views do in a worker).
With --fetch N, then `mailsift serve` (imap_workers = 0) on the same Maildir: the server
process's CPU seconds (from /proc) for a SELECT in a fresh server and for each of N
`UID FETCH 1:* (FLAGS)` after it, and the client's wall seconds.

    .venv/bin/python bench/imap_big_select.py [--messages 100000] [--repeat 5] [--fetch 0] [--tree DIR ...]

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
    return view.exists, len(view.recent), view.first_unseen(), info.uidnext, lines, view


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
    cold, held = [], r[5]  # the previous SELECT's view stays alive, as another session's does in a worker
    for _ in range(repeat):
        store.listings.drop(("big@example.test", box._frow("INBOX")["id"]))
        t0 = time.process_time()
        c = one_select(box, "INBOX")
        cold.append(time.process_time() - t0)
        assert c[:5] == r[:5], (c[:4], r[:4])
        held = c[5]
    assert held.exists == r[0]
    times.sort()
    cold.sort()
    print(f"{Path(mailsift.__file__).parents[1]}: exists {r[0]} unseen {r[2]} uidnext {r[3]} | "
          f"first SELECT {warm:.2f} s CPU | later SELECT CPU s: median {times[len(times)//2]:.4f} "
          f"min {times[0]:.4f} | select on the event loop: {nowait}/{repeat} | uncached SELECT CPU s: "
          f"median {cold[len(cold)//2]:.4f} min {cold[0]:.4f}", flush=True)


def serve_fetch(tree: str | None, root: Path, work: Path, n: int) -> None:
    """SELECT and n x UID FETCH 1:* (FLAGS) against `mailsift serve` of this tree (one process)."""
    import asyncio
    import signal
    sys.path.insert(0, str(Path(__file__).parent))
    import imap_load as L

    from mailsift.store.users import Users
    port = L.free_port()
    cfg = work / "serve.toml"
    cfg.write_text("[store]\n" f'mail_root = "{root}"\nusers = "{work / "users.db"}"\n'
                   'lmtp = "off"\npop3 = "off"\npop3s = "off"\nimaps = "off"\nlookup = "off"\n'
                   f'imap = "127.0.0.1:{port}"\nimap_workers = 0\nhostname = "bench.mailsift.test"\n'
                   f'[classifier]\ndbpath = "{work / "models"}"\n')
    (work / "users.db").unlink(missing_ok=True)
    Users(work / "users.db").add("big@example.test", L.PASSWORD)
    env = dict(os.environ, PYTHONPATH=tree) if tree else os.environ
    with open(work / "serve.log", "w") as log:
        proc = subprocess.Popen([L.MAILSIFT, "serve", "--config", str(cfg), "--log-level", "WARNING"], env=env,
                                stdout=subprocess.DEVNULL, stderr=log)

    def cpu() -> float:
        f = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    async def run() -> tuple[float, float, list[float], list[float], int]:
        c = await L.Client.connect(port)
        await c.cmd(f'LOGIN "big@example.test" "{L.PASSWORD}"'.encode())
        c0, t0 = cpu(), time.monotonic()
        await c.cmd(b"SELECT INBOX")
        sel_cpu, sel_wall = cpu() - c0, time.monotonic() - t0
        fcpu, fwall, got = [], [], 0
        for _ in range(n):
            c0, t0 = cpu(), time.monotonic()
            untagged, _ = await c.cmd(b"UID FETCH 1:* (FLAGS)")
            fcpu.append(cpu() - c0)
            fwall.append(time.monotonic() - t0)
            got = len(untagged)
        await c.cmd(b"LOGOUT")
        await c.close()
        return sel_cpu, sel_wall, fcpu, fwall, got

    try:
        L.wait_for(lambda: L.tcp_ready("127.0.0.1", port) or proc.poll() is not None, 60, what="mailsift serve")
        sel_cpu, sel_wall, fcpu, fwall, got = asyncio.run(run())
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    fcpu.sort()
    fwall.sort()
    print(f"{tree or 'imported tree'}: serve: first SELECT server CPU {sel_cpu:.2f} s (wall {sel_wall:.3f}) | "
          f"UID FETCH 1:* (FLAGS) x{n}, {got} responses: server CPU s mean {sum(fcpu) / n:.4f} (in clock "
          f"ticks: median {fcpu[n // 2]:.3f}), client wall s median {fwall[n // 2]:.3f} min {fwall[0]:.3f}",
          flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", action="append", default=[])
    ap.add_argument("--fetch", type=int, default=0, help="UID FETCH 1:* (FLAGS) rounds against mailsift serve")
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
            if args.fetch:
                serve_fetch(tree, root, work, args.fetch)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
