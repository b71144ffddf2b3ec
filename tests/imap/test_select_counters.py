"""SELECT reports the folder's UIDNEXT and HIGHESTMODSEQ as they are after the sync that built
its listing: a message another program dropped into the Maildir gets a UID in that sync, and
UIDNEXT must be above it (RFC 3501 2.3.1.1: UIDNEXT is greater than every UID in the mailbox).
The session runs in-process on a real store (tests/imap/test_store_hops.py's world)."""

from __future__ import annotations

import asyncio
import re
import time

from imap.test_store_hops import USER, client, message, serve, world  # noqa: F401


def test_select_after_an_outside_delivery_reports_uidnext_above_every_uid(world) -> None:  # noqa: F811
    store, users, shared, _executor, d = world
    inbox = d / "mail" / "example.test" / "hops"

    async def go() -> list[bytes]:
        server, port = await serve(store, users, shared)
        async with server:
            c = await client(port)
            time.sleep(0.01)  # (directory mtimes in ns; the file system's clock may be coarser)
            (inbox / "new" / "1700000000.outside.host").write_bytes(message(50))
            out = await c.cmd(b"SELECT INBOX (CONDSTORE)")
            out += await c.cmd(b"UID FETCH 1:* (UID MODSEQ)")
            c.writer.close()
            return out

    out = asyncio.run(go())
    text = b"".join(out)
    assert b"* 6 EXISTS" in text, out
    uidnext = int(re.search(rb"UIDNEXT (\d+)", text).group(1))
    highest = int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1))
    uids = [int(u) for u in re.findall(rb"FETCH \(UID (\d+)", text)]
    modseqs = [int(m) for m in re.findall(rb"MODSEQ \((\d+)\)", text)]
    assert len(uids) == 6 and uidnext > max(uids), out
    assert highest >= max(modseqs), out
