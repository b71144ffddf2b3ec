"""Which incoming headers carry someone else's verdict, and the name they are renamed to.

X-Spam-* and X-Virus-* headers a message arrives with were written by strangers: the milter
and `mailsift classify -p` rename them to NAME-Untrusted (their text kept), so no sender can
pre-label its mail. Standard library only: `mailsift classify -p` through the classify socket
uses this without importing mailsift.verdict (dataclasses, inspect: a fifth of that client's
CPU, measured).
"""

from __future__ import annotations

# Incoming headers with these prefixes are verdicts written by strangers.
VERDICT_HEADER_PREFIXES: tuple[str, ...] = ("x-spam-", "x-virus-")
UNTRUSTED_SUFFIX = "-Untrusted"


def is_verdict_header(name: str) -> bool:
    """True for incoming headers that carry someone else's verdict (X-Spam-*, X-Virus-*)."""
    low = name.strip().lower()
    return low.startswith(VERDICT_HEADER_PREFIXES) and not low.endswith(UNTRUSTED_SUFFIX.lower())


def untrusted_name(name: str) -> str:
    """The name an incoming verdict header is renamed to: X-Spam-Flag -> X-Spam-Flag-Untrusted."""
    return name.strip() + UNTRUSTED_SUFFIX
