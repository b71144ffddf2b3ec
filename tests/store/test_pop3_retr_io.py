"""What one POP3 RETR costs `mailsift serve` in system calls (counted with strace on the real
daemon), and that the cheap read (the file where the login snapshot found it) still answers
right when the file was renamed, rewritten or removed by another program meanwhile."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from harness.procs import wait_for
from test_pop3_support import PASSWORD, USER, Pop3Client, Pop3Server, pop3_server  # noqa: F401 - fixture

pytestmark = pytest.mark.integration


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def messages(n: int) -> list[bytes]:
    """Varied small messages: dot-started lines, CRLF or LF, no final newline, an empty body."""
    out = []
    for i in range(n):
        body = [b"line %d" % j for j in range(i % 40)]
        if i % 3 == 0:
            body += [b".starts with a dot", b"..two", b"."]
        text = b"From: a@example.org\nSubject: m%d\n\n" % i + b"\n".join(body)
        if i % 4 != 1:
            text += b"\n"
        out.append(crlf(text) if i % 5 == 0 else text)
    return out


def retr(c: Pop3Client, n: int) -> tuple[bytes, bytes]:
    status = c.cmd(f"RETR {n}")
    if not status.startswith(b"+OK"):
        return status, b""
    return status, b"".join(line + b"\r\n" for line in c.multiline())


def want(message: bytes) -> bytes:
    """The message as RETR must give it back (after the client undid the dot-stuffing)."""
    data = crlf(message)
    return data if not data or data.endswith(b"\r\n") else data + b"\r\n"


def traced(pid: int) -> bool:
    """strace is attached to every thread of the process."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return bool(tasks) and all(
            re.search(r"^TracerPid:\s+[1-9]", (t / "status").read_text(), re.MULTILINE) for t in tasks)
    except FileNotFoundError:
        return False


def counts(summary: str) -> dict[str, int]:
    """strace -c's table as {syscall: calls}."""
    out = {}
    for line in summary.splitlines():
        m = re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            out[m.group(2)] = int(m.group(1))
    return out


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_a_retr_reads_its_file_and_answers_in_few_system_calls(pop3_server: Pop3Server, tmp_path: Path) -> None:
    """Per RETR: one open (relative to the folder's directory), one read of the file, one
    write of the whole reply (status line, message, terminator); no fstat or lseek. Before, a
    RETR wrote its status line and the message in two system calls and read the file with
    Python's open().read() (fstat, lseek, two reads), after an index lookup of its path."""
    n = 100
    sent = messages(n)
    pop3_server.deliver(USER, sent)
    pop3_server.start()
    pid = pop3_server.daemon.pid
    c = Pop3Client(pop3_server.host, pop3_server.pop3_port)
    assert c.login().startswith(b"+OK maildrop has %d messages" % n)
    out = tmp_path / "strace.txt"
    tracer = subprocess.Popen(["strace", "-f", "-c", "-o", str(out), "-p", str(pid), "-e",
                               "trace=open,openat,read,readv,pread64,write,writev,sendto,sendmsg,"
                               "fstat,newfstatat,statx,lseek"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        try:
            wait_for(lambda: traced(pid) or tracer.poll() is not None, 20, what="strace attached")
        except TimeoutError:
            pytest.skip("strace could not attach (ptrace not permitted here)")
        if tracer.poll() is not None:
            pytest.skip("strace could not attach (ptrace not permitted here)")
        for i in range(1, n + 1):
            status, body = retr(c, i)
            assert status == b"+OK %d octets" % len(crlf(sent[i - 1])), (i, status)
            assert body == want(sent[i - 1]), i
    finally:
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
    assert c.cmd("QUIT").startswith(b"+OK")
    calls = counts(out.read_text())
    assert calls, out.read_text()
    print(f"system calls of `mailsift serve` during {n} RETRs: {calls}")  # (shown with -s)
    writes = sum(calls.get(k, 0) for k in ("write", "writev", "sendto", "sendmsg"))
    opens = calls.get("openat", 0) + calls.get("open", 0)
    stats = sum(calls.get(k, 0) for k in ("fstat", "newfstatat", "statx", "lseek"))
    reads = sum(calls.get(k, 0) for k in ("read", "readv", "pread64"))
    slack = 10  # the odd call of other threads while traced
    assert writes <= n + slack, calls
    assert opens <= n + slack, calls
    assert stats <= slack, calls
    assert reads <= 2 * n + slack, calls  # the command from the socket, the file


def test_the_snapshot_path_gone_stale_still_gives_the_right_answer(pop3_server: Pop3Server) -> None:
    """After the login, another program renames a message's file (mutt marks it read), rewrites
    another (an editor: a new file of another size under the same name) and removes a third:
    RETR serves the renamed one and the rewritten one as they are now, and the removed one
    is an -ERR, as before the cheap read."""
    sent = messages(6)
    pop3_server.deliver(USER, sent)
    pop3_server.start()
    c = Pop3Client(pop3_server.host, pop3_server.pop3_port)
    assert c.login().startswith(b"+OK maildrop has 6 messages")
    files = {}
    for p in pop3_server.inbox_files():
        files[int(re.search(rb"Subject: m(\d+)", p.read_bytes()).group(1))] = p
    renamed = files[1]
    target = renamed.parent.parent / "cur" / (renamed.name.split(":")[0] + ":2,S")
    os.rename(renamed, target)
    rewritten = files[2]
    new_text = b"From: a@example.org\nSubject: m2 edited\n\n.dot\nlonger than before, much longer\n"
    tmp = rewritten.with_name(rewritten.name + ".tmp")
    tmp.write_bytes(new_text)
    os.rename(tmp, rewritten)
    os.unlink(files[3])
    time.sleep(0.01)
    assert retr(c, 1) == (b"+OK %d octets" % len(crlf(sent[0])), want(sent[0]))
    status, body = retr(c, 2)
    assert status.startswith(b"+OK") and body == want(sent[1]), (status, body)   # renamed: found again
    status, body = retr(c, 3)
    assert status.startswith(b"+OK") and body == want(new_text), (status, body)  # as it is now
    assert retr(c, 4)[0] == b"-ERR message was removed by another client"
    assert retr(c, 5)[1] == want(sent[4]) and retr(c, 6)[1] == want(sent[5])
    assert c.cmd("QUIT").startswith(b"+OK")
