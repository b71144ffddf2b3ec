"""Bounded resources of `mailsift serve`: the file descriptor budget.

The process's file descriptor limit is raised to its hard limit at start (raise_nofile). With
`max_open_mailboxes = 0` idle mailboxes get a quarter of what is left after a base allowance
(FDS_BASE), at FDS_PER_MAILBOX descriptors each (index, WAL, shared memory, lock), at most
MAX_AUTO_MAILBOXES. The rest stays for connections and the messages they read and write.
"""

from __future__ import annotations

import logging
import resource

from mailsift.store.settings import StoreSettings

log = logging.getLogger("mailsift.serve")

FDS_BASE = 64
FDS_PER_MAILBOX = 4
MAX_AUTO_MAILBOXES = 1000


def raise_nofile() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file descriptor limit from %d to %d: %s", soft, hard, exc)
    elif hard == resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY:
        try:  # "unlimited" is refused by Linux for files; 1M is the usual kernel ceiling
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1 << 20), hard))
            soft = max(soft, 1 << 20)
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def current_nofile() -> int:
    """The soft RLIMIT_NOFILE in force."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def mailbox_cap(settings: StoreSettings, nofile: int) -> int:
    """How many idle mailboxes stay open: the setting, or a quarter of the descriptors."""
    if settings.max_open_mailboxes > 0:
        return settings.max_open_mailboxes
    return max(4, min(MAX_AUTO_MAILBOXES, (nofile - FDS_BASE) // 4 // FDS_PER_MAILBOX))
