"""Free ports, readiness polling and daemons stopped by PID (shared with `make run`)."""

import os
from pathlib import Path

from mailsift.localstack.procs import (Daemon, free_port, kill_pidfile, tcp_ready, unix_ready,  # noqa: F401
                                       wait_for)


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is `pid` (an ended one between listing and reading is skipped)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return sorted(out)
