"""Issue 14, found in review: BODYSTRUCTURE parsed MIME on the event loop: a 7 MB message of
200,000 parts took 3.5 s there, and anyone can mail one. Now a message's tree holds at most
mimetree.MAX_PARTS parts (past it, the rest of a multipart is its last part's body, opaque),
and the tree and the encoded BODY/BODYSTRUCTURE are built in a worker thread."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from imap.test_caches import ok
from imap.wire import Wire, fetch_items, parse_values
from mailsift.protocols.imap import mimetree, session
from mailsift.protocols.imap.bodystructure import body_structure, encode_body, encoded_structure

USER, PW = "uma@example.test", "uma-pw"


def many_parts(n: int) -> bytes:
    head = (b"From: a@example.test\r\nSubject: many\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
    return head + b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" * n + b"--b--\r\n"


def count(part: mimetree.Part) -> int:
    return 1 + sum(count(c) for c in part.children) + (count(part.message) if part.message else 0)


def test_parts_are_bounded_and_the_rest_is_the_last_parts_body() -> None:
    raw = many_parts(200_000)
    root = mimetree.parse(raw)
    # (ints and short bytes only in the asserts: pytest would print a Part, 7 MB per child)
    n = count(root)
    assert n == mimetree.MAX_PARTS
    last = root.children[-1]
    head, tail = last.body[:37], raw[last.end:][:100]
    assert head == b"x\r\n--b\r\nContent-Type: text/plain\r\n\r\nx"
    assert tail == b"\r\n--b--\r\n"  # up to the closing delimiter, as any last part
    n = len(parse_values(encoded_structure(root))[0])
    assert n == mimetree.MAX_PARTS - 1 + 5  # the parts, subtype, params, disposition, language, location
    once = encoded_structure(root) is encoded_structure(root)  # computed once
    assert once


def test_a_message_within_the_bound_is_unchanged() -> None:
    raw = many_parts(mimetree.MAX_PARTS - 1)
    root = mimetree.parse(raw)
    n, last = count(root), root.children[-1].body[:100]
    assert n == mimetree.MAX_PARTS and last == b"x"
    same = encoded_structure(root, False) == encode_body(body_structure(root, False))
    assert same


def test_nested_parts_count_towards_the_bound() -> None:
    inner = many_parts(6_000).replace(b"boundary=b", b"boundary=c").replace(b"--b", b"--c")
    raw = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           + (b"--b\r\n" + inner) * 3 + b"--b--\r\n")
    root = mimetree.parse(raw)
    n, sizes = count(root), [len(c.children) for c in root.children][:3]
    assert n <= mimetree.MAX_PARTS
    assert sizes[:2] == [6_000, mimetree.MAX_PARTS - 6_003]


def test_the_tree_is_parsed_off_the_event_loop(monkeypatch, tmp_path: Path) -> None:
    """In-process, on a real store and user database: which thread parses the MIME tree."""
    from mailsift.serve.context import SessionContext
    from mailsift.store.api import Store
    from mailsift.store.settings import StoreSettings
    from mailsift.store.users import Users
    threads: list[int] = []
    real_parse = mimetree.parse

    def parse(data: bytes) -> mimetree.Part:
        threads.append(threading.get_ident())
        return real_parse(data)
    monkeypatch.setattr(mimetree, "parse", parse)
    users = Users(tmp_path / "users.db")
    users.add(USER, PW)
    store = Store(tmp_path / "mail")
    settings = StoreSettings(mail_root=str(store.root), users=str(users.path), allow_plaintext_anywhere=True)
    small = b"From: a@example.test\r\nSubject: s\r\n\r\nhello\r\n"

    async def go() -> tuple[int, list[bytes]]:
        async def on_connect(reader, writer):
            ctx = SessionContext(store=store, users=users, settings=settings, peer=writer.get_extra_info("peername"),
                                 is_loopback=True, protocol="imap", shared={})
            await session.handle(reader, writer, ctx)
        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
            await reader.readline()
            replies = []
            for line in (f'a LOGIN "{USER}" "{PW}"'.encode(), b"b APPEND INBOX {%d+}\r\n" % len(small) + small,
                         b"c SELECT INBOX", b"d FETCH 1 (BODYSTRUCTURE ENVELOPE)", b"e LOGOUT"):
                writer.write(line + b"\r\n")
                tag = line[:1]
                while True:
                    reply = await asyncio.wait_for(reader.readline(), 10)
                    replies.append(reply)
                    if reply.startswith(tag + b" "):
                        break
            writer.close()
            return threading.get_ident(), replies
    try:
        loop_thread, replies = asyncio.run(go())
    finally:
        store.close()
    assert any(r.startswith(b"* 1 FETCH (BODYSTRUCTURE (") for r in replies), replies
    assert threads and loop_thread not in threads, (loop_thread, threads)


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    # one process: the other session shares the event loop of the one that fetches
    yield from module_server(mailsift_bin, {USER: PW}, extra={"imap_workers": 0}, prefix="mailsift-imapbs-")


def test_a_message_of_200000_parts_through_the_server(srv) -> None:
    raw = many_parts(200_000)
    w = Wire(srv.host, srv.imap_port, timeout=60)
    w.login(USER, PW)
    w.send(b"a APPEND INBOX {%d}\r\n" % len(raw))
    assert w.read_line().startswith(b"+ ")
    w.send(raw + b"\r\n")
    assert ok(w.read_response())
    w.command("SELECT INBOX")
    other = Wire(srv.host, srv.imap_port)
    other.login(USER, PW)
    other.command("SELECT INBOX")
    w.send(b"f FETCH 1 (BODYSTRUCTURE)\r\n")
    worst = 0.0
    start = time.monotonic()
    while not _readable(w) and time.monotonic() - start < 60:
        t = time.monotonic()  # the other session is answered while the message is parsed and encoded
        _, done = other.command("NOOP")
        assert ok(done)
        worst = max(worst, time.monotonic() - t)
    untagged = []
    while True:
        resp = w.read_response()
        if resp.startswith(b"f "):
            break
        untagged.append(resp)
    assert ok(resp), resp
    n = len(fetch_items(untagged[0])["BODYSTRUCTURE"])
    assert n == mimetree.MAX_PARTS - 1 + 5
    assert worst < 1.0, worst
    w.close()
    other.close()


def _readable(w: Wire) -> bool:
    import select
    return bool(w.buf) or bool(select.select([w.sock], [], [], 0)[0])
