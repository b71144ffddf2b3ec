"""Malformed LMTP streams against a running `mailsift serve`: every reply is well-formed, the
server survives, and nothing lands outside the mail root."""

from __future__ import annotations

import re
import shutil
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from harness.postfix import make_workdir
from store_harness import StoreServer

pytestmark = pytest.mark.integration

REPLY = re.compile(rb"^[2-5]\d\d[ -][^\r\n]*\r\n$")
PIECES = [b"LHLO x\r\n", b"MAIL FROM:<a@b.c>\r\n", b"RCPT TO:<alice@example.test>\r\n", b"RCPT TO:<../x@y>\r\n",
          b"DATA\r\n", b".\r\n", b"\r\n.\r\n", b"..\r\n", b"RSET\r\n", b"BDAT 5\r\n", b"\x00", b"\r", b"\n",
          b"MAIL FROM:<\xff>\r\n", b"RCPT TO:<alice+../../x@example.test>\r\n", b"MAIL FROM:<> SIZE=99999999999\r\n",
          b"X" * 3000, b"Subject: x\r\n\r\n", b"NOOP\r\n"]


@pytest.fixture(scope="module")
def server(mailsift_bin):
    wd = make_workdir("mailsift-fuzz-")
    srv = StoreServer(mailsift_bin, wd, {"alice@example.test": "pw"}, "tcp", {"lmtp_timeout": 2.0})
    srv.start()
    yield srv
    srv.stop()
    shutil.rmtree(wd, ignore_errors=True)


def exchange(addr, data: bytes) -> list[bytes]:
    s = socket.create_connection(addr, timeout=10)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return [ln + b"\r\n" for ln in buf.split(b"\r\n")[:-1]] + ([buf.rsplit(b"\r\n", 1)[-1]] if not buf.endswith(b"\r\n") else [])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=200)), max_size=25))
def test_garbage_streams(server, parts: list[bytes]) -> None:
    lines = exchange(server.lmtp_addr, b"".join(parts))
    assert lines and lines[0].startswith(b"220 ")
    for line in lines:
        assert REPLY.match(line), line
    assert not any(line.startswith(b"5") and b" 4." in line for line in lines)
    assert server.daemon.alive()


def test_nothing_outside_the_mail_root(server) -> None:
    exchange(server.lmtp_addr, b"LHLO x\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<alice+../../../../tmp/evil@example.test>\r\n"
             b"DATA\r\nSubject: x\r\n\r\nx\r\n.\r\nQUIT\r\n")
    root = server.mail_root
    for p in server.workdir.rglob("*"):
        if p.is_file() and p.parent.name in ("new", "cur", "tmp"):
            assert root in p.parents, p
    assert not (root.parent / "tmp" / "evil").exists()
