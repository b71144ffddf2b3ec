"""From a command's bytes to its handler, and from the handler's failures to the tagged reply.

`execute(session, data, routes)`:
- parses the command (parser.parse_command); syntax errors answer BAD, a charset we lack
  `NO [BADCHARSET]`, a name that is not modified UTF-7 NO; the session goes on until
  MAX_BAD_COMMANDS BADs in a row (`Session.bad` counts them);
- finds the command's `Route`; a command unknown, or not valid in the session's state
  (not authenticated, authenticated, selected) answers BAD;
- with a mailbox selected, first tells the client what changed in it (`Session.refresh`), but
  no EXPUNGE during FETCH, STORE, SEARCH, SORT, THREAD (RFC 3501 7.4.1), nor before COPY and
  MOVE by sequence number: their numbers are the ones the client saw when it sent them;
- binds SEARCHRES's `$` (`Session.bind_saved`), then runs the handler;
- the caller's mistakes answer NO with a response code; our faults (OSError, sqlite3.Error,
  anything unexpected) `NO [UNAVAILABLE]`, logged; nothing answers with a traceback. A client
  that went away ends the session (Closed, ConnectionError, ssl.SSLError go up).

The table of routes is the session's (session.COMMANDS); handlers are typed over the session
class through the `Session` protocol, so this module imports no session code.
"""

from __future__ import annotations

import logging
import sqlite3
import ssl
from dataclasses import dataclass
from typing import Awaitable, Callable, Generic, Mapping, Protocol, TypeVar

from mailsift.protocols.imap import binary as binarymod
from mailsift.protocols.imap.mailboxview import BadSequence
from mailsift.protocols.imap.parser import (BadCharset, Command, InvalidMailboxName, Limits, ParseError,
                                            parse_command)
from mailsift.protocols.imap.wire import Closed
from mailsift.store import api as store_api
from mailsift.store.names import InvalidName

log = logging.getLogger("mailsift.imap")

NOT_AUTHENTICATED = "notauth"
AUTHENTICATED = "auth"
SELECTED = "selected"
LOGOUT = "logout"
ANY = (NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)
AUTH = (AUTHENTICATED, SELECTED)
SEL = (SELECTED,)
_STATE_NAMES = {NOT_AUTHENTICATED: "not authenticated", AUTHENTICATED: "authenticated", SELECTED: "selected"}
# no refresh before these: they change or leave the selection, or IDLE refreshes itself
_NO_REFRESH = ("SELECT", "EXAMINE", "CLOSE", "UNSELECT", "LOGOUT", "IDLE")
# a refresh before these by sequence number holds expunges back (see the docstring)
_NO_EXPUNGE = ("FETCH", "STORE", "SEARCH", "COPY", "MOVE", "SORT", "THREAD")


class Session(Protocol):
    """What dispatching needs of a session."""
    state: str
    rev2: bool
    limits: Limits
    bad_count: int
    user: str | None
    address: str

    @property
    def selected(self) -> bool: ...

    def bad(self, tag: bytes | None, text: str, code: str | None = None) -> None: ...

    def tagged(self, tag: bytes, status: str, text: str, code: str | None = None) -> None: ...

    async def refresh(self, allow_expunge: bool, force: bool = False, with_uid: bool = True) -> None: ...

    def bind_saved(self, cmd: Command) -> Command: ...


S = TypeVar("S", bound=Session)
Handler = Callable[[S, Command], Awaitable[None]]


@dataclass(frozen=True)
class Route(Generic[S]):
    states: tuple[str, ...]     # where the command is valid
    handler: Handler[S]


async def execute(session: S, data: bytes, routes: Mapping[str, Route[S]]) -> None:
    try:
        cmd = parse_command(data, session.limits, utf8_names=session.rev2)
    except BadCharset as exc:
        session.tagged(exc.tag or b"*", "NO", "Unsupported charset", "BADCHARSET (UTF-8 US-ASCII)")
        return
    except InvalidMailboxName as exc:
        session.tagged(exc.tag or b"*", "NO", "Mailbox name is not valid mUTF-7")
        return
    except ParseError as exc:
        session.bad(exc.tag, f"Error in IMAP command: {exc}")
        return
    route = routes.get(cmd.name)
    if route is None:
        session.bad(cmd.tag, "Unknown command")
        return
    if session.state not in route.states:
        session.bad(cmd.tag, f"{cmd.name} is not valid in the {_STATE_NAMES[session.state]} state")
        return
    session.bad_count = 0
    try:
        if session.selected and cmd.name not in _NO_REFRESH:
            await session.refresh(allow_expunge=cmd.uid or cmd.name not in _NO_EXPUNGE)
        cmd = session.bind_saved(cmd)
        await route.handler(session, cmd)
    except (ParseError, BadSequence) as exc:
        session.bad(cmd.tag, str(exc) or "Invalid arguments")
    except store_api.NoSuchFolder:
        session.tagged(cmd.tag, "NO", "Mailbox doesn't exist", "NONEXISTENT")
    except store_api.FolderExists:
        session.tagged(cmd.tag, "NO", "Mailbox already exists", "ALREADYEXISTS")
    except store_api.FolderNotEmpty as exc:
        session.tagged(cmd.tag, "NO", str(exc) or "Mailbox has children", "CANNOT")
    except binarymod.UnknownCTE:
        session.tagged(cmd.tag, "NO", "Unknown Content-Transfer-Encoding", "UNKNOWN-CTE")
    except (InvalidName, store_api.InvalidFlag) as exc:
        session.tagged(cmd.tag, "NO", f"Invalid name: {exc}" if isinstance(exc, InvalidName) else str(exc), "CANNOT")
    except store_api.OverQuota as exc:
        session.tagged(cmd.tag, "NO", str(exc), "OVERQUOTA")
    except store_api.StoreError as exc:
        session.tagged(cmd.tag, "NO", str(exc) or "Refused", "CANNOT")
    except (Closed, ConnectionError, ssl.SSLError):
        raise
    except (OSError, sqlite3.Error, Exception):  # noqa: BLE001 - our fault: temporary failure
        log.exception("imap %s failed for %s", cmd.name, session.user or session.address)
        session.tagged(cmd.tag, "NO", "Internal error, try again later", "UNAVAILABLE")

