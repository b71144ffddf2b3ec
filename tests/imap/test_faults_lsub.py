"""Issue 14, conformance: RFC 3501 6.3.9: with `foo.bar` subscribed and `foo` not, `LSUB "" %`
must return `foo` flagged `\\Noselect` (a `%` cannot reach `foo.bar`); the server omitted such
parents. `*` reaches the child itself, so no parent is added then."""

from __future__ import annotations

import pytest

from imap.test_caches import ok
from imap.wire import Wire
from mailsift.protocols.imap.listpattern import ancestors, lsub_parents
from mailsift.protocols.imap.session import list_matcher

USER, PW = "tess@example.test", "tess-pw"


def test_parents_the_pattern_reaches_instead_of_the_child() -> None:
    subscribed = {"parent.a.b", "parent.c", "top.x.y", "INBOX"}
    assert ancestors("a.b.c", ".") == ["a", "a.b"]
    assert lsub_parents(subscribed, list_matcher("", "parent.%"), ".") == ["parent.a"]
    assert lsub_parents(subscribed, list_matcher("", "%"), ".") == ["parent", "top"]
    assert lsub_parents(subscribed, list_matcher("", "*"), ".") == []
    assert lsub_parents(subscribed, list_matcher("top.", "%"), ".") == ["top.x"]


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {USER: PW}, prefix="mailsift-imaplsub-")


def test_lsub_returns_unsubscribed_parents_as_noselect(srv) -> None:
    w = Wire(srv.host, srv.imap_port)
    w.login(USER, PW)
    for name in ("parent", "parent.a", "parent.a.b", "parent.c"):
        _, done = w.command(f"CREATE {name}")
        assert ok(done), done
        w.command(f"UNSUBSCRIBE {name}")
    for name in ("parent.a.b", "parent.c"):
        _, done = w.command(f"SUBSCRIBE {name}")
        assert ok(done), done
    untagged, done = w.command('LSUB "" parent.%')
    assert ok(done)
    assert sorted(untagged) == [b'* LSUB (\\HasNoChildren) "." parent.c', b'* LSUB (\\Noselect) "." parent.a'], untagged
    untagged, done = w.command('LSUB "" %')
    assert ok(done) and b'* LSUB (\\Noselect) "." parent' in untagged, untagged
    assert not any(b"parent." in u for u in untagged), untagged
    untagged, done = w.command('LSUB "" parent.*')
    assert ok(done)
    assert sorted(untagged) == [b'* LSUB (\\HasNoChildren) "." parent.a.b', b'* LSUB (\\HasNoChildren) "." parent.c'], untagged
    w.close()
