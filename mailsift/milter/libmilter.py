"""Which libmilter pymilter runs on.

Debian's shared libmilter (libmilter1.0.1) is built with a worker pool (_FFR_WORKERS_POOL):
a controller thread polls every milter connection and hands each to a worker thread, and
back through a pipe, whenever the connection runs out of input. `make venv` links pymilter
statically against a libmilter built from Debian's own source without the pool
(deploy/build-libmilter.sh), one thread per connection reading its commands directly:
measured, that saves about a third of the milter process's CPU per message
(bench/milter_throughput.py, docs/milter.md).
"""

from __future__ import annotations

import ctypes


def worker_pool_linked() -> bool | None:
    """True when pymilter's libmilter has the worker pool, False when it has not, None when
    that cannot be told. dlsym() on the extension's handle also searches the libraries it
    was linked against, so a shared libmilter's symbols are found through it too."""
    try:
        import milter

        lib = ctypes.CDLL(milter.__file__)
    except (ImportError, OSError):
        return None
    try:
        lib.smfi_main  # noqa: B018 - the probe: a libmilter is visible from here at all
    except AttributeError:
        return None
    try:
        lib.mi_pool_controller_init  # noqa: B018
    except AttributeError:
        return False
    return True
