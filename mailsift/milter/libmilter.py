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


def worker_pool_linked(library: str | None = None) -> bool | None:
    """True when the libmilter that `library` (default: pymilter's extension module) runs on
    has the worker pool, False when it has not, None when that cannot be told. dlsym() on a
    handle also searches the libraries it was linked against, so a shared libmilter's
    symbols are found through pymilter's module too."""
    try:
        if library is None:
            import milter

            library = milter.__file__
        lib = ctypes.CDLL(library)
    except (ImportError, OSError):
        return None
    if not hasattr(lib, "smfi_main"):  # no libmilter visible from here at all
        return None
    return hasattr(lib, "mi_pool_controller_init")
