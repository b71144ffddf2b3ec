r"""IMAP4rev1 (RFC 3501) and, after `ENABLE IMAP4rev2`, IMAP4rev2 (RFC 9051) for `mailsift serve`.

Pure, byte-level pieces (tested on bytes alone):
    parser.py         command lines, literals, sequence sets, search keys, fetch attributes
    response.py       encoding of responses: atoms, quoted strings, literals, lists
    mutf7.py          modified UTF-7 mailbox names (RFC 3501 5.1.3)
    rev2.py           what changes for a session that enabled IMAP4rev2 (RFC 9051)
    listpattern.py    LIST/LSUB patterns (`*`, `%`) matched in linear time
    mimetree.py       a message's MIME tree with exact byte ranges (shared by the next three)
    envelope.py       ENVELOPE
    bodystructure.py  BODY and BODYSTRUCTURE
    sections.py       BODY[section]<partial>, RFC822.SIZE
    search.py         evaluating SEARCH keys over one message
    fetch.py          FETCH response lines from messages' bytes and store data (a plan per command)
    mailboxview.py    a session's view of its selected folder (sequence numbers, \Recent, news)

The connection:
    wire.py           whole commands off the wire, literals inlined, within parser.Limits
                      (lines through mailsift/protocols/linereader.py, shared with LMTP, POP3)
    compress.py       COMPRESS=DEFLATE stream wrappers
    context.py        the session's typed context and the services its process shares
    dispatch.py       a command to its handler by state; failures to tagged replies
    loader.py         message bytes from the store for FETCH, SEARCH, SORT, THREAD, and their caches
    storecalls.py     the session's compound store calls, one worker-thread hop each
    headercache.py    the process-wide cache of top-level headers
    answercache.py    beside it, per folder, the HEADER.FIELDS answers of listings
    session.py        the states and the base protocol's handlers over the store API

`handle` is what `mailsift serve` calls for the imap and imaps listeners.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailsift.serve.context import SessionContext


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
    from mailsift.protocols.imap.session import handle as session_handle
    await session_handle(reader, writer, ctx)
