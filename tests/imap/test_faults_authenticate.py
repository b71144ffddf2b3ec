"""Issue 14, found in review: an error inside an AUTHENTICATE continuation (the client's response
line after `+ `) escaped as a traceback in the log and answered `NO [UNAVAILABLE]` as if the
server had failed. Now a response line over the line bound answers a tagged `BAD`, and the
login deadline passing while the server waits for the response answers a tagged `NO` and ends
the connection; neither leaves a traceback."""

from __future__ import annotations

import base64
import time

import pytest

from imap.test_caches import ok
from imap.wire import Wire
from mailsift.protocols.imap.parser import Limits

USER, PW = "rita@example.test", "rita-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server  # also asserts: no traceback in the log
    yield from module_server(mailsift_bin, {USER: PW}, extra={"login_timeout": 2}, prefix="mailsift-imapauth-")


def plain(user: str, password: str) -> bytes:
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())


def test_a_response_line_over_the_bound_answers_bad_and_the_session_goes_on(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.send(b"a AUTHENTICATE PLAIN\r\n")
    assert w.read_line().startswith(b"+")
    w.send(b"A" * (Limits().max_line + 100) + b"\r\n")
    reply = w.read_response()
    assert reply.startswith(b"a BAD "), reply
    w.send(b"b AUTHENTICATE PLAIN\r\n")  # a good one afterwards works
    assert w.read_line().startswith(b"+")
    w.send(plain(USER, PW) + b"\r\n")
    assert ok(w.read_response())
    w.close()
    assert "Traceback" not in srv.log(), srv.log()[-3000:]


def test_the_login_deadline_during_the_continuation_answers_no_and_closes(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.send(b"a AUTHENTICATE PLAIN\r\n")
    assert w.read_line().startswith(b"+")
    start = time.monotonic()
    lines = []
    try:
        while True:
            lines.append(w.read_response())
    except (ConnectionError, OSError):
        pass
    assert time.monotonic() - start < 15
    assert lines and lines[0].startswith(b"a NO "), lines
    assert any(line.startswith(b"* BYE") for line in lines), lines
    w.close()
    assert "Traceback" not in srv.log(), srv.log()[-3000:]
