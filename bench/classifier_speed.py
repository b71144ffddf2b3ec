#!/usr/bin/env python3
"""Classifier speed and size: against bogofilter on the same files, and on one core.

    .venv/bin/python bench/classifier_speed.py [--index INDEX] [--limit N] [--runs 50]
                                               [--no-bogofilter] [--no-inprocess]

Against bogofilter (issue 16), on the first 2,000 messages of the stream (learned) and the
next ones (up to 2,000, classified), with the CPUs this may use:
    one message per process  `mailsift classify --dbpath DIR FILE` and `bogofilter -T -I FILE`,
                             each --runs times on different messages: median wall ms (from
                             spawn to exit) and peak RSS (GNU time's %M)   <= 50 ms, <= 40 MB
    bulk learn               `mailsift learn --ham/--spam FILES` (two runs) and
                             `bogofilter -n/-s -B FILES`: msgs/s wall       >= 1.0x bogofilter
    bulk classify            `mailsift classify FILES`, `bogofilter -T -B FILES`: msgs/s wall
                                                                            >= 1.0x bogofilter
    model                    model.bin after the 2,000 (and bogofilter's wordlist.db) <= 5 MB
    python start-up          `python -c pass` and its -S, -I, -I -S variants: the floor; and
                             `python -S -m mailsift classify` (no site, no development-install
                             import hook: this tree on PYTHONPATH)
mailsift runs as installed: bytecode compiled once (PYTHONPYCACHEPREFIX in a temp dir, even
where PYTHONDONTWRITEBYTECODE is set), this tree first on PYTHONPATH.

On the shared corpora stream (corpora/build_index.py) or INDEX, pinned to one CPU with one
BLAS thread:
    learning    msgs/s, each message read from its file and learned (SpamModel.learn)  >= 1,000
    classifying msgs/s, each message read from its file and judged (SpamModel.verdict) >= 1,000
    latency     p99 of one in-process verdict, messages up to 100 KB                    <= 5 ms
    model file  bytes in the saved model directory (save_model)                         <= 64 MB
    RSS         peak resident memory of a separate classifier process: `mailsift classify
                --dbpath DIR` over the messages (load_model + verdict when that command
                is missing)                                                             <= 200 MB
Also, for reference, `mailsift learn` run as a user runs it, when that command exists.
Rates and latencies are CPU time (process_time / thread_time): the machine this runs on is
shared, and wall time measures the neighbours too. Wall figures are printed beside.
Prints each figure with PASS/FAIL; exit status 0 when all pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "corpora"))

TARGETS = {
    "learn_rate": 1000.0,
    "classify_rate": 1000.0,
    "p99_ms": 5.0,
    "model_mb": 64.0,
    "rss_mb": 200.0,
}
MAX_LATENCY_MSG = 100 * 1024
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# Linux keeps a process's peak RSS across fork and exec, so a child forked straight from this
# (large) process would report at least our own peak. A small launcher forks the measured
# command from its own small image and reports that grandchild's peak from wait4.
_LAUNCHER = (
    "import os, sys, json\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    fd = os.open(os.devnull, os.O_RDWR)\n"
    "    os.dup2(fd, 1)\n"
    "    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(json.dumps([usage.ru_maxrss, os.waitstatus_to_exitcode(status)]))\n"
)


def child_peak_rss_mb(argv: list[str]) -> tuple[float, int, float]:
    """Run argv; return (its peak RSS in MB, its exit status, seconds)."""
    import json

    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, *argv], capture_output=True, text=True,
                       env={**os.environ, **ONE_THREAD})
    seconds = time.monotonic() - t0
    try:
        maxrss_kb, status = json.loads(p.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        sys.stderr.write(p.stderr[-2000:])
        return float("inf"), -1, seconds
    if status not in (0, 1, 2):
        sys.stderr.write(p.stderr[-2000:])
    return maxrss_kb / 1024.0, int(status), seconds


TRAIN = 2000
ISSUE_TARGETS = {"one_ms": 50.0, "one_rss_mb": 40.0, "bulk_ratio": 1.0, "model_2000_mb": 5.0}
GNU_TIME = "/usr/bin/time"


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def one_process(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run argv once under GNU time: (wall ms from spawn to exit, peak RSS MB, exit status).
    GNU time is a small C program: the peak RSS Linux carries over fork and exec is its own
    (about 2 MB), not this process's."""
    with tempfile.NamedTemporaryFile("r", prefix="mailsift-time-") as out:
        t0 = time.perf_counter()
        p = subprocess.run([GNU_TIME, "-f", "%M", "-o", out.name, *argv], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=env)
        wall = (time.perf_counter() - t0) * 1000
        try:
            rss = int(out.read().strip().splitlines()[-1]) / 1024
        except (ValueError, IndexError):
            rss = float("inf")
    return wall, rss, p.returncode


def per_process(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, float, float, set[int]]:
    """Median wall ms, median peak RSS MB and median CPU ms of one process per argv."""
    walls, rsss, cpus, codes = [], [], [], set()
    for argv in argvs:
        c0 = _children_cpu()
        wall, rss, code = one_process(argv, env)
        cpus.append((_children_cpu() - c0) * 1000)
        walls.append(wall)
        rsss.append(rss)
        codes.add(code)
    return _median(walls), _median(rsss), _median(cpus), codes


def bulk(argvs: list[list[str]], env: dict[str, str]) -> tuple[float, float, list[int]]:
    """Run the argvs one after the other: (wall seconds, CPU seconds of all their processes, codes)."""
    c0, t0 = _children_cpu(), time.perf_counter()
    codes = []
    for argv in argvs:
        p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        if p.returncode not in (0, 1, 2):
            sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
        codes.append(p.returncode)
    return time.perf_counter() - t0, _children_cpu() - c0, codes


def against_bogofilter(entries: list, runs: int) -> bool:  # type: ignore[type-arg]
    """The issue-16 comparison (see the module docstring); prints it, returns whether all pass."""
    import shutil

    bogo = shutil.which("bogofilter")
    if bogo is None or not Path(GNU_TIME).exists():
        print("against bogofilter: skipped (needs bogofilter and GNU time: bench/apt-packages.txt)")
        return False
    train, test = entries[:TRAIN], entries[TRAIN:TRAIN + 2000]
    if len(train) < TRAIN or not test:
        print(f"against bogofilter: skipped (needs more than {TRAIN} messages)")
        return False
    cpus = len(os.sched_getaffinity(0))
    version = subprocess.run([bogo, "-V"], capture_output=True, text=True).stdout.split("\n")[0].strip()
    exe = str(Path(sys.executable).parent / "mailsift")
    ok = True
    with tempfile.TemporaryDirectory(prefix="mailsift-vs-bogo-") as tmp:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update({"PYTHONPATH": str(ROOT), "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")})
        db, bdir = Path(tmp) / "model", Path(tmp) / "bogofilter"
        bdir.mkdir()
        ham = [str(e.path) for e in train if e.label == "ham"]
        spam = [str(e.path) for e in train if e.label == "spam"]
        files = [str(e.path) for e in test]
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "mailsift")], env=env,
                       stdout=subprocess.DEVNULL)  # as installed: bytecode compiled once

        m_learn = bulk([[exe, "learn", "--ham", "--dbpath", str(db), *ham],
                        [exe, "learn", "--spam", "--dbpath", str(db), *spam]], env)
        b_learn = bulk([[bogo, "-C", "-d", str(bdir), "-n", "-B", *ham],
                        [bogo, "-C", "-d", str(bdir), "-s", "-B", *spam]], env)
        model_mb = (db / "model.bin").stat().st_size / 1e6
        bogo_mb = sum(p.stat().st_size for p in bdir.iterdir() if p.is_file()) / 1e6
        m_cls = bulk([[exe, "classify", "--dbpath", str(db), *files]], env)
        b_cls = bulk([[bogo, "-C", "-d", str(bdir), "-T", "-B", *files]], env)

        one = files[:runs]
        one_process([exe, "classify", "--dbpath", str(db), one[0]], env)  # warm: bytecode, page cache
        m_one = per_process([[exe, "classify", "--dbpath", str(db), f] for f in one], env)
        b_one = per_process([[bogo, "-C", "-d", str(bdir), "-T", "-I", f] for f in one], env)
        # the same without `site` (so without the development install's import hook): this
        # tree on PYTHONPATH is all the one-message route needs
        s_one = per_process([[sys.executable, "-S", "-m", "mailsift", "classify", "--dbpath", str(db), f]
                             for f in one], env)
        py = sys.executable
        starts = [(flags, per_process([[py, *flags.split(), "-c", "pass"]] * runs, env))
                  for flags in ("", "-S", "-I", "-I -S")]
        numpy_start = per_process([[py, "-c", "import numpy"]] * min(runs, 20), env)

    def rate(n: int, r: tuple[float, float, list[int]]) -> float:
        return n / r[0] if all(c in (0, 1, 2) for c in r[2]) else 0.0

    learn_m, learn_b = rate(TRAIN, m_learn), rate(TRAIN, b_learn)
    cls_m, cls_b = rate(len(files), m_cls), rate(len(files), b_cls)
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    print(f"against {version}, the same files: {TRAIN:,} messages learned ({len(ham):,} ham, {len(spam):,} spam), "
          f"{len(files):,} classified; {cpus} CPU(s) this may use, shared; wall time")
    rows = [
        ("one message per process", f"{m_one[0]:.1f} ms, {m_one[1]:.1f} MB (CPU {m_one[2]:.1f} ms)",
         f"{b_one[0]:.1f} ms, {b_one[1]:.1f} MB (CPU {b_one[2]:.1f} ms)",
         f"median of {len(one)}: <= {ISSUE_TARGETS['one_ms']:.0f} ms, <= {ISSUE_TARGETS['one_rss_mb']:.0f} MB",
         m_one[0] <= ISSUE_TARGETS["one_ms"] and m_one[1] <= ISSUE_TARGETS["one_rss_mb"] and m_one[3] <= {0, 1, 2}),
        ("bulk learn", f"{learn_m:,.0f} msgs/s (CPU {m_learn[1]:.1f} s)", f"{learn_b:,.0f} msgs/s (CPU {b_learn[1]:.1f} s)",
         f">= 1.0x bogofilter: x{learn_m / max(learn_b, 1e-9):.2f}", learn_m >= learn_b > 0),
        ("bulk classify", f"{cls_m:,.0f} msgs/s (CPU {m_cls[1]:.1f} s)", f"{cls_b:,.0f} msgs/s (CPU {b_cls[1]:.1f} s)",
         f">= 1.0x bogofilter: x{cls_m / max(cls_b, 1e-9):.2f}", cls_m >= cls_b > 0),
        (f"model after {TRAIN:,}", f"{model_mb:.2f} MB (model.bin)", f"{bogo_mb:.2f} MB (wordlist.db)",
         f"<= {ISSUE_TARGETS['model_2000_mb']:.0f} MB", model_mb <= ISSUE_TARGETS["model_2000_mb"]),
    ]
    print(f"{'':<25} {'mailsift':<38} {'bogofilter':<38} target")
    for name, mine, theirs, target, passed in rows:
        print(f"{name:<25} {mine:<38} {theirs:<38} {target}: {verdict(passed)}")
        ok = ok and passed
    print(f"{'':<25} without site (python -S -m mailsift classify): {s_one[0]:.1f} ms, {s_one[1]:.1f} MB "
          f"(CPU {s_one[2]:.1f} ms)")
    print("python start-up, median of " + str(runs) + " (wall ms, peak RSS MB, CPU ms): " + "; ".join(
        f"python{(' ' + f) if f else ''} -c pass {r[0]:.1f} / {r[1]:.1f} / {r[2]:.1f}" for f, r in starts)
        + f"; python -c 'import numpy' {numpy_start[0]:.1f} / {numpy_start[1]:.1f} / {numpy_start[2]:.1f}")
    print()
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="classifier speed and size, against bogofilter and on one core")
    ap.add_argument("--index", type=Path, help="an index file (default: the shared corpora stream)")
    ap.add_argument("--limit", type=int, help="only the first N messages")
    ap.add_argument("--runs", type=int, default=50, help="one-message processes per tool (default 50)")
    ap.add_argument("--no-bogofilter", action="store_true", help="skip the comparison with bogofilter")
    ap.add_argument("--no-inprocess", action="store_true", help="skip the in-process figures on one core")
    args = ap.parse_args(argv)

    from mailsift.classifier.corpus import read_index

    if args.index:
        entries = read_index(args.index)
    else:
        import build_index

        entries = build_index.shared_stream()
    if args.limit:
        entries = entries[: args.limit]
    for e in entries:  # warm the page cache: measure the classifier, not the disk
        e.path.read_bytes()
    vs_ok = True
    if not args.no_bogofilter:
        vs_ok = against_bogofilter(entries, args.runs)
    if args.no_inprocess:
        return 0 if vs_ok else 1

    os.environ.update(ONE_THREAD)  # before numpy is imported (below)
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    total_bytes = sum(e.path.stat().st_size for e in entries)
    print(f"{len(entries)} messages, {total_bytes / len(entries) / 1024:.1f} KB average, "
          f"pinned to CPU {cpu}, one BLAS thread")

    from mailsift.classifier.api import new_model, save_model

    model = new_model()
    t0, c0 = time.perf_counter(), time.process_time()
    for e in entries:
        model.learn(e.path.read_bytes(), e.label)
    learn_s, learn_cpu = time.perf_counter() - t0, time.process_time() - c0
    learn_rate = len(entries) / learn_cpu

    t0, c0 = time.perf_counter(), time.process_time()
    labels = [model.verdict(e.path.read_bytes()).label for e in entries]
    classify_s, classify_cpu = time.perf_counter() - t0, time.process_time() - c0
    classify_rate = len(entries) / classify_cpu

    small = [e.path.read_bytes() for e in entries if e.path.stat().st_size <= MAX_LATENCY_MSG]
    lat: list[float] = []  # CPU time of the calling thread
    wall: list[float] = []
    for raw in small:
        t, c = time.perf_counter_ns(), time.thread_time_ns()
        model.verdict(raw)
        lat.append((time.thread_time_ns() - c) / 1e9)
        wall.append((time.perf_counter_ns() - t) / 1e9)
    lat.sort()
    wall.sort()

    def pct(q: float, xs: list[float]) -> float:
        return 1000.0 * xs[min(len(xs) - 1, int(q * len(xs)))]

    p50, p99, worst = pct(0.50, lat), pct(0.99, lat), 1000.0 * lat[-1]
    p99_wall = pct(0.99, wall)
    biggest = max(len(r) for r in small)

    with tempfile.TemporaryDirectory(prefix="mailsift-speed-") as tmp:
        db = Path(tmp) / "model"
        t0 = time.perf_counter()
        save_model(model, db)
        save_s = time.perf_counter() - t0
        model_mb = dir_bytes(db) / 1e6

        import importlib.util

        files = [str(e.path) for e in entries[:2000]]
        if importlib.util.find_spec("mailsift.classifier.cmd_classify") is not None:
            how = f"`mailsift classify --dbpath DIR` over {len(files)} files"
            cmd = [str(Path(sys.executable).parent / "mailsift"), "classify", "--dbpath", str(db), *files]
            rss_mb, status, rss_s = child_peak_rss_mb(cmd)
        else:
            how = f"load_model + verdict over {len(files)} files (no `mailsift classify` yet)"
            code = ("import sys; from mailsift.classifier.api import load_model\n"
                    "m = load_model(sys.argv[1])\n"
                    "for f in sys.argv[2:]:\n    m.verdict(open(f, 'rb').read())\n")
            rss_mb, status, rss_s = child_peak_rss_mb([sys.executable, "-c", code, str(db), *files])
        learn_cli = None
        if importlib.util.find_spec("mailsift.classifier.cmd_learn") is not None:
            exe = str(Path(sys.executable).parent / "mailsift")
            ham = [e.path for e in entries if e.label == "ham"]
            spam = [e.path for e in entries if e.label == "spam"]
            db2 = Path(tmp) / "cli"
            t0 = time.monotonic()
            r1 = subprocess.run([exe, "learn", "--ham", "--dbpath", str(db2), *map(str, ham)],
                                capture_output=True, env={**os.environ, **ONE_THREAD})
            r2 = subprocess.run([exe, "learn", "--spam", "--dbpath", str(db2), *map(str, spam)],
                                capture_output=True, env={**os.environ, **ONE_THREAD})
            cli_s = time.monotonic() - t0
            if r1.returncode == 0 and r2.returncode == 0:
                learn_cli = len(entries) / cli_s
            else:
                sys.stderr.write((r1.stderr + r2.stderr).decode(errors="replace")[-2000:])

    results = [
        ("learning", f"{learn_rate:,.0f} msgs/s of CPU time ({len(entries)} in {learn_cpu:.1f} s CPU, "
         f"{learn_s:.1f} s wall)",
         learn_rate >= TARGETS["learn_rate"], ">= 1,000 msgs/s"),
        ("classifying", f"{classify_rate:,.0f} msgs/s of CPU time ({len(entries)} in {classify_cpu:.1f} s CPU, "
         f"{classify_s:.1f} s wall; "
         f"{labels.count('spam')} spam, {labels.count('ham')} ham, {labels.count('unsure')} unsure)",
         classify_rate >= TARGETS["classify_rate"], ">= 1,000 msgs/s"),
        ("p99 latency", f"{p99:.2f} ms CPU (p50 {p50:.2f} ms, max {worst:.1f} ms; wall p99 {p99_wall:.2f} ms; "
         f"{len(small)} messages "
         f"<= 100 KB, largest {biggest / 1024:.0f} KB)", p99 <= TARGETS["p99_ms"], "<= 5 ms"),
        ("model file", f"{model_mb:.1f} MB (saved in {save_s:.2f} s)", model_mb <= TARGETS["model_mb"], "<= 64 MB"),
        ("classifier RSS", f"{rss_mb:.0f} MB peak ({how}, exit {status}, {rss_s:.1f} s)"
         + ("" if status in (0, 1, 2) else " -- the classifier failed: no valid figure"),
         rss_mb <= TARGETS["rss_mb"] and status in (0, 1, 2), "<= 200 MB"),
    ]
    print()
    for name, figure, ok, target in results:
        print(f"{name:<15} {figure}\n{'':<15} target {target}: {verdict(ok)}")
    if learn_cli is not None:
        print(f"{'mailsift learn':<15} {learn_cli:,.0f} msgs/s end to end (two runs, --ham then --spam, "
              f"including start-up and saving; for reference)")
    return 0 if vs_ok and all(ok for _, _, ok, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
