"""Our `mailsift serve` and a private Dovecot 2.3 side by side, for the differential tests: one
work directory for both, started in turn, stopped by PID and removed however the tests end.

    @pytest.fixture(scope="module")
    def pair(mailsift_bin):
        with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-xdiff-") as (ours, dc), \\
                dovecot_pair.sessions((ours, dc), USER, PW, setup=fill) as (w_ours, w_dc):
            yield w_ours, w_dc

`servers` fails the module if our server's log holds a traceback once the tests are done (no
command may end in an internal error); `sessions` logs one `Wire` in to each server, runs
`setup` on it (in the order given: ours first) and closes them all at the end.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from harness.dovecot import DovecotInstance
from imap.conftest import ImapServer
from imap.wire import Wire
from mailsift.protocols.imap.parser import format_datetime

Extra = dict[str, Any] | Callable[[Path], dict[str, Any]]


@contextmanager
def servers(mailsift_bin: str, users: dict[str, str], prefix: str, extra: Extra | None = None,
            dovecot_users: dict[str, str] | None = None,
            dovecot_conf: str = "") -> Iterator[tuple[ImapServer, DovecotInstance]]:
    """(ours, dovecot), both running, with the same users (`dovecot_users` when Dovecot's differ).
    `extra`: our [store] settings, or a function of the work directory that returns them (for
    files they name, such as a TLS certificate); `dovecot_conf` is added to Dovecot's config."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    (workdir / "mailsift").mkdir()
    settings = extra(workdir) if callable(extra) else extra
    ours = ImapServer(mailsift_bin, workdir / "mailsift", users, settings)
    dc = DovecotInstance(workdir / "dovecot", users if dovecot_users is None else dovecot_users,
                         pop3=False, lmtp=False, extra_conf=dovecot_conf)
    try:
        ours.start()
        dc.start()
        yield ours, dc
    finally:
        ours.stop()
        dc.stop()
        log = ours.log()
        shutil.rmtree(workdir, ignore_errors=True)
    at = log.find("Traceback")
    assert at < 0, log[max(0, at - 500):at + 4000]


@contextmanager
def sessions(peers: Iterable[ImapServer | DovecotInstance], user: str, password: str,
             setup: Callable[[Wire], None] | None = None) -> Iterator[tuple[Wire, ...]]:
    """One logged-in Wire per server, in the order given, each after `setup(wire)`."""
    wires: list[Wire] = []
    try:
        for peer in peers:
            w = Wire(peer.host, peer.imap_port)
            wires.append(w)
            w.login(user, password)
            if setup is not None:
                setup(w)
        yield tuple(wires)
    finally:
        for w in wires:
            w.close()


def append_messages(w: Wire, messages: Iterable[bytes],
                    append_args: Callable[[int], tuple[str, Any]], folder: str = "INBOX") -> None:
    """APPEND each message (numbered from 1) with the flags and date append_args(i) gives."""
    for i, data in enumerate(messages, 1):
        flags, date = append_args(i)
        _, done = w.command(f'APPEND {folder} ({flags}) "{format_datetime(date)}" '.encode()
                            + b"{%d+}\r\n" % len(data) + data)
        assert b" OK " in done, done


def status_of(done: bytes) -> bytes:
    """`tag OK [CODE ...] text` -> b"OK" (+ b" CODE" when there is one); Dovecot's timings dropped."""
    m = re.match(rb"^\S+ (OK|NO|BAD)(?: \[([A-Z-]+))?", done)
    assert m, done
    return m.group(1) + (b" " + m.group(2) if m.group(2) else b"")
