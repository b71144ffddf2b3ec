"""Issue 14, found in review: LIST patterns were turned into regular expressions, which
backtrack: `LIST "" "*******x"` against a 60-character name took 1.2 s on the event loop (ten
stars: hours) and stalled every other session of the worker. listpattern.py matches in linear
time; here it is checked against the regular-expression meaning on random names and patterns,
and through a real server with a pattern the old code would take minutes on."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings, strategies as st

from imap.test_caches import ok
from imap.wire import Wire
from mailsift.protocols.imap.listpattern import compile_pattern
from mailsift.protocols.imap.session import list_matcher

USER, PW = "olga@example.test", "olga-pw"


def reference(pattern: str, name: str) -> bool:
    """What RFC 3501 6.3.8 says, written the slow (backtracking) way: only for short inputs."""
    rx = "".join(".*" if c == "*" else r"[^.]*" if c == "%" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name, re.S) is not None


@settings(max_examples=800, deadline=None)
@given(st.text(alphabet="ab.*%", max_size=9), st.text(alphabet="ab.", max_size=10))
def test_the_matcher_agrees_with_the_rfc_meaning(pattern: str, name: str) -> None:
    assert compile_pattern(pattern, ".")(name) == reference(pattern, name), (pattern, name)


def test_examples() -> None:
    m = list_matcher("", "INBOX.%")
    assert m("INBOX.a") and not m("INBOX.a.b") and not m("INBOX")
    assert list_matcher("", "inbox")("INBOX")
    assert list_matcher("Lists.", "*")("Lists.python.dev") and not list_matcher("Lists.", "*")("Other")
    assert list_matcher("", "%")("Junk") and not list_matcher("", "%")("a.b")
    assert list_matcher("", "a%b")("ab") and list_matcher("", "a*b")("a.x.b")


def test_many_stars_against_a_long_name_are_linear() -> None:
    """In a child process with a time limit: the old regular expression would run for hours."""
    code = ("from mailsift.protocols.imap.session import list_matcher\n"
            "import time; t = time.perf_counter()\n"
            "for stars in (7, 10, 30):\n"
            "    assert not list_matcher('', '*' * stars + 'x')('a' * 60)\n"
            "    assert not list_matcher('', '%*' * stars + 'x')('a.' * 30)\n"
            "assert list_matcher('', '*a' * 50 + '*')('a' * 200)\n"
            "print(time.perf_counter() - t)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) < 2.0, out.stdout


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imaplist-")


def test_a_hostile_pattern_neither_stalls_the_session_nor_others(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    long_name = "a" * 60
    _, done = w.command(f"CREATE {long_name}")
    assert ok(done), done
    other = Wire(srv.host, srv.imap_port)
    other.login(USER, PW)
    start = time.monotonic()
    untagged, done = w.command('LIST "" "' + "*" * 12 + 'x"')  # the old code: far beyond hours
    assert ok(done) and untagged == [], (untagged, done)
    untagged, done = w.command('LIST "" "' + "*" * 12 + 'a"')
    assert ok(done) and any(long_name.encode() in u for u in untagged), untagged
    _, done = other.command("NOOP")
    assert ok(done)
    assert time.monotonic() - start < 10
    w.close()
    other.close()
