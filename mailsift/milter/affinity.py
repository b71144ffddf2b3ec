"""Which CPUs the milter process runs on (`[milter] cpus`).

The milter's Python runs under the GIL, one callback at a time, in one thread per milter
connection. Spread over several cores, every GIL hand-off between those threads is a
wake-up on another core (an inter-processor interrupt, and the other core's cache); kept on
one core, the same hand-off is a cheap switch on the core already running. Measured with
Postfix and clamd on 2 cores (bench/milter_throughput.py, docs/milter.md "Fifth round"): the
milter's CPU per message 0.79 -> 0.72 ms and mailsift + clamd 504 -> 518 msgs/s (three rounds
of `--only bare mailsift mailsift-allcpus`), 0.83 -> 0.72 ms and 483 -> 511 msgs/s (three
alternating pairs under taskset). The other cores are left to Postfix and clamd.

    auto      one CPU: the last of those the process may use (interrupts usually favour the
              first); every allowed CPU when score_workers > 0, whose processes inherit it
    all       no change: whatever the process was started with (systemd's CPUAffinity=, taskset)
    2 / 2,3   exactly these CPU numbers
"""

from __future__ import annotations

import os


def parse_cpus(spec: str) -> str | frozenset[int]:
    """'auto', 'all' or a set of CPU numbers; ValueError for anything else."""
    text = spec.strip().lower()
    if text in ("auto", "all"):
        return text
    try:
        cpus = frozenset(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"cpus {spec!r}: expected auto, all or CPU numbers such as 1 or 2,3") from None
    if not cpus or min(cpus) < 0:
        raise ValueError(f"cpus {spec!r}: expected auto, all or CPU numbers such as 1 or 2,3")
    return cpus


def choose_cpus(spec: str, allowed: frozenset[int], score_workers: int = 0) -> frozenset[int] | None:
    """The CPUs to keep the milter on, or None to leave its affinity as it is."""
    wanted = parse_cpus(spec)
    if wanted == "all":
        return None
    if wanted == "auto":
        if score_workers > 0 or len(allowed) < 2:
            return None
        return frozenset({max(allowed)})
    assert isinstance(wanted, frozenset)
    if not wanted <= allowed:
        raise ValueError(f"cpus {spec!r}: this process may only run on CPUs "
                         f"{','.join(map(str, sorted(allowed)))}")
    return wanted


def spare_cpus(allowed: frozenset[int], kept: frozenset[int] | None) -> frozenset[int] | None:
    """The CPUs the milter was allowed but keeps off (for its occasional helper processes, such as
    the share agent's model installer); None when it keeps them all."""
    if kept is None:
        return None
    return (allowed - kept) or None


def apply_cpus(spec: str, score_workers: int = 0) -> frozenset[int] | None:
    """Confine this thread, and every thread and process it starts afterwards, to the CPUs
    `spec` chooses. Call it before any thread starts. Returns the CPUs, or None when left."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = choose_cpus(spec, frozenset(os.sched_getaffinity(0)), score_workers)
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    return cpus
