"""`mailsift milter` on the wire: the milter protocol spoken directly, the MTA's commands cut
into writes of every size, replies read as they come off the socket.

The venv's libmilter reads whatever the socket holds and serves later commands from its buffer,
and holds back modification packets until the reply that ends the step
(deploy/libmilter-patches/buffered-io.patch); these tests show that the milter still sees every
command exactly once, whatever the cut, and that the reply stream is the protocol's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from milter_wire import (FINAL_REPLIES, SMFIP_NOEOH, SMFIP_NR_BODY, SMFIP_NR_HDR, MtaSide, message_commands, packet,
                         parse_replies, split_packets)

HEADERS = [
    ("From", "Sender <sender@outside.test>"),
    ("To", "user@example.test"),
    ("Subject", "wire test"),
    ("Message-ID", "<wire-1@outside.test>"),
    ("X-Spam-Flag", "NO"),
]
BODY = b"Hello,\r\n\r\nthe minutes of Tuesday's meeting are attached below.\r\n" * 40


@pytest.fixture
def wire_milter(milter_factory, clamd, trained_dbpath):  # type: ignore[no-untyped-def]
    return milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath))


def check_verdict(replies: list[tuple[bytes, bytes]]) -> None:
    added, changed, final = parse_replies(replies)
    names = [n for n, _ in added]
    assert final == b"c", replies
    # the sender's own X-Spam-Flag is deleted (index 1) and comes back renamed, text kept
    assert changed == [("X-Spam-Flag", 1, "")]
    assert ("X-Spam-Flag-Untrusted", "NO") in added
    for name in ("X-Spam-Score", "X-Spam-Level", "X-Spam-Status", "X-Virus-Scanned", "X-Virus-Status"):
        assert names.count(name) == 1, (name, names)
    assert dict(added)["X-Virus-Status"] == "Clean"
    assert dict(added)["X-Spam-Status"].startswith(("Yes, score=", "No, score="))


@pytest.mark.parametrize("chunk", [None, 1, 5, 7, 4096], ids=lambda c: f"writes-of-{c or 'all'}")
def test_every_command_seen_once_whatever_the_cut(wire_milter, chunk: int | None) -> None:
    """Two messages on one connection, the second after an ABORT, each command stream cut into
    writes of `chunk` bytes (1 byte: every length prefix arrives split; 5: packet boundaries
    fall mid-header)."""
    mta = MtaSide(wire_milter.socket)
    try:
        protocol = mta.negotiate()
        # what the milter asks for: no end-of-headers, no replies to headers or body chunks
        assert protocol & SMFIP_NOEOH and protocol & SMFIP_NR_HDR and protocol & SMFIP_NR_BODY
        for n in range(2):
            mta.send(message_commands(HEADERS, BODY, f"WIRE{n}{chunk or 0}", protocol), chunk)
            check_verdict(mta.replies())
            mta.send(packet(b"A"), chunk)  # Postfix ends each transaction with an ABORT
        mta.send(packet(b"Q"), chunk)
        assert mta.sock.recv(1) == b""  # QUIT: the milter closes its side
    finally:
        mta.close()
    log = wire_milter.log()
    for n in range(2):
        assert log.count(f"queue_id=WIRE{n}{chunk or 0} ") == 1, log[-2000:]


def test_commands_sent_together_are_all_answered(wire_milter) -> None:
    """Three messages' commands in one write (pipelined, the milter's reads see several
    packets at once and packets cut at the buffer's end): three verdicts, in order."""
    mta = MtaSide(wire_milter.socket)
    try:
        protocol = mta.negotiate()
        stream = b"".join(message_commands(HEADERS, BODY * 8, f"PIPE{n}", protocol) + packet(b"A")
                          for n in range(3))
        mta.send(stream)
        for _ in range(3):
            check_verdict(mta.replies())
    finally:
        mta.close()
    log = wire_milter.log()
    assert [line.split("queue_id=")[1].split()[0] for line in log.splitlines() if "queue_id=PIPE" in line] == \
        ["PIPE0", "PIPE1", "PIPE2"]


def test_end_of_message_answer_is_one_write(wire_milter) -> None:
    """The header changes and the final reply leave the milter in one write: the first recv()
    after end-of-message returns all of them (with stock libmilter, a write per packet, it
    returns as soon as the first arrives), so Postfix's cleanup is woken once per message."""
    mta = MtaSide(wire_milter.socket)
    try:
        protocol = mta.negotiate()
        mta.send(message_commands(HEADERS, BODY, "ONEWRITE", protocol))
        replies, rest = split_packets(mta.recv_some())
        assert rest == b"" and replies and replies[-1][0][0] in FINAL_REPLIES, replies
        check_verdict(replies)
        assert len(replies) >= 8
    finally:
        mta.close()


def _cpus_of(pid: int) -> dict[int, str]:
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except FileNotFoundError:  # a short-lived thread (e.g. start-up's) ended meanwhile
            continue
        out[int(task.name)] = next(line.split(":", 1)[1].strip() for line in status.splitlines()
                                   if line.startswith("Cpus_allowed_list:"))
    return out


def test_milter_and_its_connection_threads_run_on_one_cpu(wire_milter) -> None:
    """[milter] cpus = auto (the default): the process and every thread it starts, libmilter's
    connection threads included, are kept on the last CPU the milter may use."""
    allowed = os.sched_getaffinity(0)
    if len(allowed) < 2:
        pytest.skip("one CPU: nothing to choose")
    mta = MtaSide(wire_milter.socket)
    try:
        mta.negotiate()  # a connection thread now exists, and stays until QUIT
        tasks = _cpus_of(wire_milter.daemon.pid)
    finally:
        mta.close()
    assert len(tasks) >= 3, tasks  # main, libmilter's listener and signal threads, the connection
    assert set(tasks.values()) == {str(max(allowed))}, tasks
    assert f"running on CPU {max(allowed)} (cpus=auto)" in wire_milter.log()


def test_cpus_all_leaves_the_affinity_alone(milter_factory, clamd, trained_dbpath) -> None:
    milter = milter_factory("--clamd", clamd.address, "--dbpath", str(trained_dbpath), "--cpus", "all")
    allowed = os.sched_getaffinity(0)
    assert {frozenset(_expand(c)) for c in _cpus_of(milter.daemon.pid).values()} == {frozenset(allowed)}


def _expand(cpus_list: str) -> set[int]:
    out: set[int] = set()
    for part in cpus_list.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return out
