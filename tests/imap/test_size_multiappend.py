"""STATUS=SIZE (RFC 8438) and MULTIAPPEND (RFC 3502) against a real `mailsift serve` and,
differentially, a private Dovecot 2.3 holding the same messages: STATUS SIZE (also through
LIST-STATUS) equals the sum of RFC822.SIZE and Dovecot's figure; a MULTIAPPEND stores every
message with its flags and date, or none of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from imap import dovecot_pair
from imap import dovecot_reference as ref
from imap.wire import Wire, fetch_items, parse_values
from mailsift.protocols.imap.parser import ParseError, parse_command, parse_datetime

USER, PW = "multi@example.test", "multi-pw"


def test_multiappend_grammar() -> None:
    c = parse_command(b'a APPEND Box (\\Seen) " 5-Jan-2020 10:00:00 +0000" {2+}\r\nm1 {2+}\r\nm2 (\\Draft) {2+}\r\nm3')
    assert c.args["messages"] == (
        (("\\Seen",), c.args["date"], b"m1"), ((), None, b"m2"), (("\\Draft",), None, b"m3"))
    assert (c.args["flags"], c.args["message"]) == (("\\Seen",), b"m1")  # the first, as before
    for bad in (b"a APPEND Box {2+}\r\nm1 (\\Seen)", b'a APPEND Box {2+}\r\nm1 "x"',
                b"a APPEND Box {2+}\r\nm1 (\\Bogus) {2+}\r\nm2", b"a APPEND Box {2+}\r\nm1 m2"):
        with pytest.raises(ParseError):
            parse_command(bad)


def test_append_many_is_all_or_none(tmp_path: Path) -> None:
    from mailsift.store.api import InvalidFlag, Store
    store = Store(tmp_path / "mail", hostname="test")
    box = store.mailbox("u@example.test")
    box.create_folder("Box")
    infos = box.append_many("Box", [(b"Subject: a\r\n\r\n1\r\n", ["\\Seen"], 1_600_000_000.0),
                                    (b"Subject: b\n\nline\n", ["$Label"], None)])
    assert [i.uid for i in infos] == [1, 2] and infos[1].size == len(b"Subject: b\r\n\r\nline\r\n")
    assert box.status("Box").size == sum(i.size for i in infos)
    with pytest.raises(InvalidFlag):
        box.append_many("Box", [(b"Subject: c\r\n\r\n3\r\n", [], None), (b"x", ["\\Bogus"], None)])
    assert box.status("Box").messages == 2
    assert not any((tmp_path / "mail").rglob("tmp/*"))  # nothing left behind
    store.close()


@pytest.fixture(scope="module")
def pair(mailsift_bin: str, data_dir: Path, corpora: Path):
    files = ref.sample_messages(data_dir, corpora, 4, seed=8438)

    def fill(w: Wire) -> None:
        dovecot_pair.append_messages(w, (f.read_bytes() for f in files), ref.append_args)

    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-sizediff-") as peers, \
            dovecot_pair.sessions(peers, USER, PW, setup=fill) as (ours, theirs):
        yield files, ours, theirs


def status(w: Wire, folder: str, items: str) -> dict[str, int]:
    untagged, done = w.command(f"STATUS {folder} ({items})")
    assert b" OK " in done, done
    v = parse_values(untagged[0][len(b"* STATUS "):])
    return dict(zip(v[1][::2], v[1][1::2]))


def test_capabilities(pair) -> None:
    _, ours, _ = pair
    caps, _ = ours.command("CAPABILITY")
    assert b" STATUS=SIZE" in caps[0] and b" MULTIAPPEND" in caps[0]


def test_status_size_is_the_sum_of_rfc822_size_and_agrees_with_dovecot(pair) -> None:
    files, ours, theirs = pair
    assert len(files) >= 20
    a, b = status(ours, "INBOX", "MESSAGES SIZE"), status(theirs, "INBOX", "SIZE MESSAGES")
    assert a == b and a["MESSAGES"] == len(files)
    ours.command("EXAMINE INBOX")
    untagged, _ = ours.command("FETCH 1:* RFC822.SIZE")
    assert a["SIZE"] == sum(fetch_items(u)["RFC822.SIZE"] for u in untagged)
    ours.command("UNSELECT")
    for w in (ours, theirs):
        untagged, done = w.command('LIST "" INBOX RETURN (STATUS (SIZE))')
        assert untagged[-1] == b"* STATUS INBOX (SIZE %d)" % a["SIZE"], untagged


def _multi(w: Wire, folder: str, parts: list[tuple[str, bytes]]) -> bytes:
    cmd = f"APPEND {folder}".encode()
    for prefix, data in parts:
        cmd += b" " + prefix.encode() + (b" " if prefix else b"") + b"{%d+}\r\n" % len(data) + data
    return w.command(cmd)[1]


MSGS = [("(\\Seen)", b"Subject: one\r\n\r\nfirst\r\n"),
        ('(\\Flagged $Work) " 2-Feb-2021 03:04:05 +0100"', b"Subject: two\n\nsecond, LF only\n"),
        ("", b"Subject: three\r\n\r\nthird\r\n")]


def test_multiappend_stores_all_like_dovecot(pair) -> None:
    _, ours, theirs = pair
    seen = []
    for w in (ours, theirs):
        assert b" OK " in w.command("CREATE Multi")[1]
        done = _multi(w, "Multi", MSGS)
        m = re.search(rb"\[APPENDUID (\d+) (\S+)\]", done)
        assert b" OK " in done and m and m.group(2) == b"1:3", done
        w.command("EXAMINE Multi")
        untagged, _ = w.command("FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[])")
        items = [fetch_items(u) for u in untagged]
        for it in items:
            it["FLAGS"] = sorted(f for f in it["FLAGS"] if f != "\\Recent")
            when = parse_datetime(it.pop("INTERNALDATE").decode())  # the same instant, any zone
            it["WHEN"] = when.timestamp() if when.year == 2021 else None  # else: now
        w.command("UNSELECT")
        seen.append(items)
    assert seen[0] == seen[1]
    assert [it["FLAGS"] for it in seen[0]] == [["\\Seen"], ["$Work", "\\Flagged"], []]
    assert seen[0][1]["WHEN"] == 1612231445.0  # 2021-02-02 03:04:05 +0100
    assert status(ours, "Multi", "MESSAGES SIZE") == status(theirs, "Multi", "MESSAGES SIZE")


def test_multiappend_stores_none_when_one_message_is_refused(pair) -> None:
    _, ours, theirs = pair
    for w in (ours, theirs):
        w.command("CREATE Atomic")
        before = status(w, "Atomic", "MESSAGES UIDNEXT")
        done = _multi(w, "Atomic", [MSGS[0], ("(\\Bogus)", b"Subject: x\r\n\r\nx\r\n")])
        assert b" BAD " in done, done
        done = _multi(w, "Atomic", [MSGS[0], ("", b"")])
        assert b" NO " in done, done
        done = _multi(w, "NoSuchFolder", MSGS[:2])
        assert b" NO [TRYCREATE]" in done, done
        assert status(w, "Atomic", "MESSAGES UIDNEXT") == before == {"MESSAGES": 0, "UIDNEXT": 1}


def test_multiappend_with_synchronising_literals(pair) -> None:
    """`{n}` for every message: a `+` before each literal, then one tagged OK."""
    _, ours, theirs = pair
    for w in (ours, theirs):
        w.command("CREATE Sync")
        w.send(b"s1 APPEND Sync (\\Seen) {5}\r\n")
        assert w.read_response().startswith(b"+")
        w.send(b"hello {5}\r\n")
        assert w.read_response().startswith(b"+")
        w.send(b"world\r\n")
        done = w.read_response()
        while not done.startswith(b"s1 "):
            done = w.read_response()
        assert b" OK " in done, done
        assert status(w, "Sync", "MESSAGES SIZE") == {"MESSAGES": 2, "SIZE": 10}


def test_multiappend_bounds_the_number_of_messages(tmp_path: Path) -> None:
    from mailsift.protocols.imap import multiappend
    from mailsift.store.api import Store
    store = Store(tmp_path / "mail", hostname="test")
    box = store.mailbox("u@example.test")
    one = ((), None, b"Subject: n\r\n\r\nn\r\n")
    with pytest.raises(multiappend.Refused) as exc:
        multiappend.append_all(box, "INBOX", (one,) * (multiappend.MAX_MESSAGES + 1))
    assert exc.value.code == "LIMIT" and box.status("INBOX").messages == 0
    uidvalidity, infos = multiappend.append_all(box, "inbox", (one,) * 3)
    assert [i.uid for i in infos] == [1, 2, 3] and uidvalidity == box.folder("INBOX").uidvalidity
    store.close()
