#!/usr/bin/env python3
"""One message, one process: `mailsift classify` through the classify socket, against bogofilter.

    .venv/bin/python bench/classify_route.py [--runs 50] [--train 250]

The way procmail, maildrop or a shell loop runs a filter: a new process per message, the
message on stdin. In a temporary directory: a mailsift model trained with `mailsift learn` on
the first --train ham and spam of the shared SpamAssassin corpus, a bogofilter wordlist
trained on the same files (`bogofilter -C -d DIR -s|-n -B`), and `mailsift milter` (no clamd)
serving the classify socket (`[classifier] socket`, docs/classifier.md). Then, for each of
--runs held-out messages (alternately ham and spam), one process of each row below; printed:
wall ms (median and p90 over the runs), CPU ms of the process (user + system, from wait4;
less at the mercy of a loaded machine than wall time) and peak RSS (median, from GNU time's
%M, itself a small C process, so the floor is ~1.5 MB):

    python -c pass              the interpreter's start, the floor of any Python command
    python -I -S -c pass        the same without site (no .pth files, no editable finder)
    python -S, editable finder  without site, but importing the finder an editable install
                                of the old setup.cfg ran from a .pth file at every start (only
                                when the venv has one: `make venv` now installs a plain path)
    classify, socket            `mailsift classify --config C` with [classifier] socket
      the same, python -S       `python -S -m mailsift classify ...` (mailsift on PYTHONPATH):
                                what the client costs without site and the .pth files
    classify -p, socket         the message back with the headers (procmail's filter recipe)
    classify, in-process        the same config without the socket: loads the model itself
    mailsift-classify, socket   client/mailsift-classify.c (built here with gcc, as `make venv`
                                builds it): the same arguments, in C, as spamc
    mailsift-classify -p        the same with -p
    bogofilter -T               `bogofilter -C -d DIR -T`

mailsift's bytecode is compiled once, into the temporary directory (PYTHONPYCACHEPREFIX), as
an installed package has it, even where the environment sets PYTHONDONTWRITEBYTECODE.
Also checks that the socket (Python and C) and in-process routes print the same line for
every message, and -p the same message back from both clients.
Target (issue 16): at most 10 ms through the socket. The machine is shared: run it when idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent.parent / "shared" / "corpora" / "spamassassin"
if not CORPUS.is_dir():
    CORPUS = Path("/work/shared/corpora/spamassassin")
BIN = Path(sys.executable).parent
TARGET_MS = 10.0
# What the venv's .pth files do at every start (`make venv` installs mailsift editable): site
# itself left out, the editable finder alone.
PURELIB = Path(sysconfig.get_paths()["purelib"])
FINDER = (f"import sys; sys.path.append({str(PURELIB)!r}); "
          "import __editable___mailsift_0_1_finder as f; f.install()")


def corpus(folder: str) -> list[Path]:
    return sorted(p for p in (CORPUS / folder).iterdir() if p.is_file() and not p.name.startswith("cmds"))


def run_wall(argv: list[str], message: Path, env: dict[str, str]) -> tuple[float, float, bytes]:
    """(wall ms, CPU ms of the process: user + system from wait4, stdout)."""
    with open(message, "rb") as fh:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=fh, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        assert p.stdout is not None
        out = p.stdout.read()
        _, _, usage = os.wait4(p.pid, 0)
        wall = (time.perf_counter() - t0) * 1000.0
        p.returncode = 0  # reaped here
        return wall, (usage.ru_utime + usage.ru_stime) * 1000.0, out


def run_rss(argv: list[str], message: Path, env: dict[str, str]) -> float:
    with open(message, "rb") as fh:
        p = subprocess.run(["/usr/bin/time", "-f", "%M", *argv], stdin=fh, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env, text=True)
    return int(p.stderr.strip().splitlines()[-1]) / 1024.0


def wait_socket(path: Path, proc: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mailsift milter exited with {proc.returncode}")
        if path.exists():
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(path))
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    raise SystemExit(f"{path} did not answer within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="mailsift classify per process: socket vs in-process vs bogofilter")
    ap.add_argument("--runs", type=int, default=50, help="messages, one process each per row (default 50)")
    ap.add_argument("--train", type=int, default=250, help="ham and spam each to train on (default 250)")
    args = ap.parse_args(argv)

    ham, spam = corpus("easy_ham"), corpus("spam")
    train_ham, train_spam = ham[: args.train], spam[: args.train]
    held = [m for pair in zip(ham[args.train:], spam[args.train:]) for m in pair][: args.runs]
    mailsift = str(BIN / "mailsift")
    tmp = Path(tempfile.mkdtemp(prefix="classify-route-"))
    # As installed: bytecode compiled once (into the temporary directory, not the tree), not
    # on every start as PYTHONDONTWRITEBYTECODE=1 would have it.
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(tmp / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    milter = None
    try:
        dbpath, bogo = tmp / "model", tmp / "bogofilter"
        bogo.mkdir()
        for label, files in (("--ham", train_ham), ("--spam", train_spam)):
            subprocess.run([mailsift, "learn", "--no-progress", "--dbpath", str(dbpath), label,
                            *map(str, files)], check=True, env=env, stdout=subprocess.DEVNULL)
        have_bogo = shutil.which("bogofilter") is not None
        if have_bogo:
            for flag, files in (("-n", train_ham), ("-s", train_spam)):
                subprocess.run(["bogofilter", "-C", "-d", str(bogo), flag, "-B", *map(str, files)], check=True)
        sock = tmp / "run" / "classify.sock"
        base = f'[classifier]\ndbpath = "{dbpath}"\n'
        (tmp / "alone.toml").write_text(base)
        (tmp / "socket.toml").write_text(base + f'socket = "{sock}"\n')
        (tmp / "milter.toml").write_text(base + f'socket = "{sock}"\n[milter]\nclamd = ""\n'
                                         f'socket = "unix:{tmp}/run/milter.sock"\n')
        milter = subprocess.Popen([mailsift, "milter", "--config", str(tmp / "milter.toml"), "--log-level",
                                   "WARNING"], env=env, stderr=open(tmp / "milter.log", "wb"))
        wait_socket(sock, milter)

        client = tmp / "mailsift-classify"
        subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", f'-DMAILSIFT_BIN="{mailsift}"', "-o", str(client),
                        str(ROOT / "client" / "mailsift-classify.c")], check=True)
        py = sys.executable
        rows: list[tuple[str, list[str]]] = [
            ("python -c pass", [py, "-c", "pass"]),
            ("python -I -S -c pass", [py, "-I", "-S", "-c", "pass"]),
        ]
        if (PURELIB / "__editable___mailsift_0_1_finder.py").exists():
            rows.append(("python -S, editable finder", [py, "-S", "-c", FINDER]))
        rows += [
            ("classify, socket", [mailsift, "classify", "--config", str(tmp / "socket.toml")]),
            ("  the same, python -S", [py, "-S", "-m", "mailsift", "classify", "--config", str(tmp / "socket.toml")]),
            ("classify -p, socket", [mailsift, "classify", "-p", "--config", str(tmp / "socket.toml")]),
            ("classify, in-process", [mailsift, "classify", "--config", str(tmp / "alone.toml")]),
            ("mailsift-classify, socket", [str(client), "--config", str(tmp / "socket.toml")]),
            ("mailsift-classify -p", [str(client), "-p", "--config", str(tmp / "socket.toml")]),
        ]
        if have_bogo:
            rows.append(("bogofilter -T", ["bogofilter", "-C", "-d", str(bogo), "-T"]))
        load0 = os.getloadavg()
        for _, argv_ in rows:  # warm the page cache, the daemon and the bytecode cache
            run_wall(argv_, held[0], env)
        walls: dict[str, list[float]] = {name: [] for name, _ in rows}
        cpus: dict[str, list[float]] = {name: [] for name, _ in rows}
        rss: dict[str, list[float]] = {name: [] for name, _ in rows}
        outs: dict[str, list[bytes]] = {name: [] for name, _ in rows}
        for msg in held:  # rows interleaved per message: a slow spell of the host hits them all
            for name, argv_ in rows:
                ms, cpu, out = run_wall(argv_, msg, env)
                walls[name].append(ms)
                cpus[name].append(cpu)
                outs[name].append(out)
                rss[name].append(run_rss(argv_, msg, env))

        print(f"{len(held)} held-out messages (SpamAssassin easy_ham/spam after the first {args.train} "
              f"of each, on which both filters were trained), one process per message and row, stdin")
        print(f"load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
              f"({os.cpu_count()} CPUs)")
        print(f"{'':27} {'wall ms p50':>11} {'p90':>7} {'CPU ms p50':>10} {'RSS MB p50':>11}")
        for name, _ in rows:
            w = sorted(walls[name])
            print(f"{name:27} {statistics.median(w):11.1f} {w[int(0.9 * (len(w) - 1))]:7.1f} "
                  f"{statistics.median(cpus[name]):10.1f} {statistics.median(rss[name]):11.1f}")
        same = sum(a == b == c for a, b, c in zip(outs["classify, socket"], outs["classify, in-process"],
                                                    outs["mailsift-classify, socket"]))
        same_p = sum(a == b for a, b in zip(outs["classify -p, socket"], outs["mailsift-classify -p"]))
        assert all(b"X-Spam-Status: " in out for out in outs["classify -p, socket"])
        print(f"socket (Python and C) and in-process lines identical: {same} of {len(held)}; "
              f"-p output identical (Python and C): {same_p} of {len(held)}")
        for name in ("classify, socket", "mailsift-classify, socket"):
            ms = statistics.median(walls[name])
            print(f"target: {name.split(',')[0]} through the socket <= {TARGET_MS:.0f} ms wall: {ms:.1f} ms, "
                  f"{'PASS' if ms <= TARGET_MS else 'FAIL'}")
        print(f"(python -c pass alone: {statistics.median(walls['python -c pass']):.1f} ms; bogofilter -T: "
              f"{statistics.median(walls.get('bogofilter -T', [float('nan')])):.1f} ms)")
        return 0 if same == same_p == len(held) else 1
    finally:
        if milter is not None:
            milter.send_signal(signal.SIGTERM)
            try:
                milter.wait(timeout=10)
            except subprocess.TimeoutExpired:
                milter.kill()
                milter.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
