"""The IMAP4rev1 session (RFC 3501) over asyncio streams and the store API.

States: not authenticated -> authenticated -> selected -> logout. Extensions: LITERAL+, SASL-IR,
IDLE, UIDPLUS, MOVE, SPECIAL-USE, NAMESPACE, ID, ENABLE, UNSELECT, CHILDREN, CONDSTORE, and the
search-side ones in SEARCH_CAPABILITIES (ESEARCH, SEARCHRES, SORT, THREAD, WITHIN, PREVIEW, BINARY).

- Commands are read whole by wire.py (literals inlined, sizes bounded by parser.Limits) and
  run by dispatch.py through the routes in COMMANDS; syntax errors answer BAD and the session
  goes on (until MAX_BAD_COMMANDS). The session's context is typed (context.py); message bytes
  come through its loader (loader.py).
- Store calls block, so they run in worker threads. The store is the truth: changes made by
  other sessions, LMTP deliveries and outside programs reach this session as store events,
  which mark the selected folder dirty; the view (mailboxview.py) is refreshed from a fresh
  listing at command boundaries and during IDLE, never reporting EXPUNGE during FETCH, STORE or
  SEARCH.
- Our faults (OSError, sqlite3.Error, anything unexpected) answer `NO [UNAVAILABLE]`; the
  caller's mistakes answer NO with a response code; nothing answers with a traceback
  (dispatch.py).
- Logins: plaintext only on TLS, from loopback or when configured (store/auth.py), throttled per
  address and user, the same words whatever failed. Connections per address and per user are
  capped; idle sessions are logged out after IDLE_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as _dt
import functools
import logging
import ssl
from typing import Any, Callable

from mailsift.ops import metrics
from mailsift.protocols.imap import compress, dispatch, esearch, fetch as fetchmod, listext, multiappend, mutf7
from mailsift.protocols.imap import qresync, response, rev2, search as searchmod, searchres, sort as sortmod
from mailsift.protocols.imap import statusitems, storecalls, thread as threadmod
from mailsift.protocols.imap import quota as imapquota
from mailsift.protocols.imap.context import ImapContext
from mailsift.protocols.imap.dispatch import ANY, AUTH, NOT_AUTHENTICATED, SEL, Route
from mailsift.protocols.imap.listpattern import compile_pattern, lsub_parents
from mailsift.protocols.imap.loader import MessageLoader, WouldBlock
from mailsift.protocols.imap.mailboxview import MailboxView
from mailsift.protocols.imap.parser import Command, FetchAtt, Limits, SavedResult
from mailsift.protocols.imap.wire import Closed, CommandTooBig, LineTooLong, WireReader
from mailsift.protocols.sasl import decode_plain
from mailsift.serve.context import SessionContext
from mailsift.store import api as store_api
from mailsift.store.auth import Authenticator, plaintext_allowed
from mailsift.store.listing import MAX_KEYWORDS, too_many_keywords

log = logging.getLogger("mailsift.imap")

IDLE_TIMEOUT = 30 * 60          # seconds without a command before autologout (RFC 3501: >= 30 min)
MAX_BAD_COMMANDS = 20           # BAD answers in a row before the connection is closed
MAX_AUTH_FAILURES = 3           # per connection; the throttle spans connections
MAX_CONNECTIONS_PER_ADDRESS = 50  # not for loopback (a local webmail speaks for many users)
MAX_CONNECTIONS_PER_USER = 20
WRITE_HIGH_WATER = 256 * 1024
OUTPUT_CHUNK = 64 * 1024        # collected response bytes handed to the transport within a command
FLAGS_CHUNK = 2048              # FETCH (FLAGS) lines made at a time (fetch_flags_fast): about 80 KB
FETCH_BATCH = 64                # messages read per worker-thread hop
MAX_BUFFERED_EVENTS = 10_000     # store events kept per session between commands
SEPARATOR = "."
SERVER_NAME = "mailsift"
SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
BASE_CAPABILITIES = ("IMAP4rev1", *rev2.CAPABILITIES, "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE", "NAMESPACE",
                     "UNSELECT", "CHILDREN", "SPECIAL-USE", "UIDPLUS", "MOVE", "CONDSTORE")
MAILBOX_EXTENSIONS = (listext.CAPABILITIES + statusitems.CAPABILITIES  # each in its own module
                      + multiappend.CAPABILITIES + imapquota.CAPABILITIES + qresync.CAPABILITIES)
# the search-side extensions (esearch.py, searchres.py, sort.py, thread.py, ...), each once it works
SEARCH_CAPABILITIES = ("ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT", "THREAD=ORDEREDSUBJECT",
                       "THREAD=REFERENCES", "WITHIN", "PREVIEW", "BINARY", "SAVEDATE")


def list_matcher(reference: str, pattern: str) -> Callable[[str], bool]:
    """LIST reference + pattern with `*` (anything) and `%` (anything but the separator);
    a leading INBOX matches in any case."""
    full = reference + pattern
    if full[:5].upper() == "INBOX":
        full = "INBOX" + full[5:]
    return compile_pattern(full, SEPARATOR)  # linear time, no regex backtracking


class _FlagAtoms(dict[frozenset[str], str]):
    """{flag set: its FETCH FLAGS atoms as text} (with \\Recent added or not), each made once."""

    def __init__(self, recent: bool) -> None:
        super().__init__()
        self.recent = recent

    def __missing__(self, flags: frozenset[str]) -> str:
        atoms = self[flags] = fetchmod.flag_atoms(flags, self.recent).decode("ascii")
        return atoms


class ImapSession:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
        self.writer: asyncio.StreamWriter | compress.DeflateWriter = writer
        self.ctx = ImapContext.of(ctx)
        self.services = self.ctx.services
        self.settings = self.ctx.settings
        self.tls = self.ctx.tls
        self.secure = self.ctx.implicit_tls
        self.is_loopback = self.ctx.is_loopback
        self.address = self.ctx.address
        self.auth = Authenticator(self.ctx.users, self.ctx.gate)
        self.limits = Limits()
        self.inp = WireReader(reader, self.limits, IDLE_TIMEOUT)
        self.state = "notauth"
        self.user: str | None = None
        self.box: store_api.Mailbox | None = None
        self.subscription: Any = None         # store events of this user (see store_event)
        self.events: list[Any] = []           # buffered, bounded by MAX_BUFFERED_EVENTS
        self.events_overflow = False
        self.wake = asyncio.Event()           # set when an event arrives (IDLE waits on it)
        self.loop = asyncio.get_running_loop()
        self.sel: MailboxView | None = None
        self.condstore = False
        self.qresync = False                  # ENABLE QRESYNC (qresync.py)
        self.rev2 = False                     # ENABLE IMAP4rev2 (rev2.py)
        self.saved: tuple[MailboxView, list[int]] | None = None  # SEARCHRES: (view, UIDs)
        self.bad_count = 0
        self.auth_failures = 0
        self.closing = False
        self.loader: MessageLoader | None = None  # message bytes and their caches (loader.py)
        self.out: list[bytes] = []            # responses not yet written (see send)
        self.out_size = 0

    # -- output -----------------------------------------------------------------------------
    # Responses are collected and written once per command (at flush), not once per line: each
    # write to a TCP_NODELAY socket is a send() and a segment of its own (perf: a SELECT was 8
    # sends; the load benchmark's session mix made 2.6 per command, now 1).
    def send(self, data: bytes) -> None:
        self.out.append(data)
        self.out_size += len(data)

    def _write_out(self) -> None:
        if self.out:
            self.writer.write(b"".join(self.out) if len(self.out) > 1 else self.out[0])
            self.out.clear()
            self.out_size = 0

    async def flush(self) -> None:
        self._write_out()
        await self.writer.drain()

    async def maybe_flush(self) -> None:
        """Within a long response: hand what is collected to the transport once it is big,
        and wait for the client once the transport holds more than WRITE_HIGH_WATER."""
        if self.out_size >= OUTPUT_CHUNK:
            self._write_out()
        transport = self.writer.transport
        if transport is not None and transport.get_write_buffer_size() > WRITE_HIGH_WATER:
            await self.writer.drain()

    def untagged(self, text: str | bytes) -> None:
        self.send(response.untagged(text))

    def tagged(self, tag: bytes, status: str, text: str, code: str | None = None) -> None:
        self.send(response.tagged(tag, status, text, code))

    # -- capabilities ------------------------------------------------------------------------
    def plaintext_ok(self) -> bool:
        return plaintext_allowed(self.secure, self.is_loopback, self.settings.allow_plaintext_anywhere)

    def capabilities(self) -> str:
        caps = list(BASE_CAPABILITIES) + list(SEARCH_CAPABILITIES)
        caps += MAILBOX_EXTENSIONS
        if self.state != "notauth":
            caps += compress.CAPABILITIES
        if self.state == "notauth":
            if self.tls is not None and not self.secure:
                caps.append("STARTTLS")
            if self.plaintext_ok():
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
        return " ".join(caps)

    # -- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        addr_counts = self.services.by_address
        addr_counts[self.address] = addr_counts.get(self.address, 0) + 1
        limiter = self.services.limiter
        counted = False
        try:
            if not self.is_loopback:
                cap = self.settings.imap_max_per_address or MAX_CONNECTIONS_PER_ADDRESS
                if limiter is not None:  # IMAP worker processes: the main process counts for all
                    counted = await limiter.acquire("address", self.address, cap)
                    over = not counted
                else:
                    over = addr_counts[self.address] > cap
                if over:
                    self.untagged("BYE [UNAVAILABLE] Too many connections from your address")
                    await self.flush()
                    return
            # [store] login_timeout, not restarted by traffic: no unauthenticated trickle holds on
            self.inp.deadline = self.loop.time() + float(self.settings.login_timeout)
            self.untagged(f"OK [CAPABILITY {self.capabilities()}] {SERVER_NAME} IMAP ready")
            await self.flush()
            while not self.closing:
                try:
                    data = await self.read_command()
                except LineTooLong:
                    self.bad(None, "Line too long")
                    await self.flush()
                    continue
                except CommandTooBig as exc:
                    if exc.fatal:
                        self.untagged("BYE Literal too big")
                        break
                    self.bad(exc.tag, "Literal too big", code="TOOBIG")
                    await self.flush()
                    continue
                except TimeoutError:
                    self.untagged("BYE Autologout; idle for too long")
                    break
                await dispatch.execute(self, data, COMMANDS)
                await self.flush()
            await self.flush()
        except (Closed, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError) as exc:
            log.debug("imap connection from %s ended: %r", self.address, exc)
        finally:
            addr_counts[self.address] = addr_counts.get(self.address, 1) - 1
            if addr_counts[self.address] <= 0:
                addr_counts.pop(self.address, None)
            if counted and limiter is not None:
                limiter.release("address", self.address)
            self.logout_cleanup()
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 - the transport may already be gone
                pass

    def logout_cleanup(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
            self.subscription = None
        self.events.clear()
        if self.user is not None:
            users = self.services.by_user
            users[self.user] = users.get(self.user, 1) - 1
            if users[self.user] <= 0:
                users.pop(self.user, None)
            limiter = self.services.limiter
            if limiter is not None:
                limiter.release("user", self.user)
            self.user = None

    async def read_command(self) -> bytes:
        return await self.inp.command(self.state == "notauth", self.literal_ready)

    async def literal_ready(self) -> None:
        self.send(response.continuation("Ready for literal data"))
        await self.flush()

    def bad(self, tag: bytes | None, text: str, code: str | None = None) -> None:
        self.bad_count += 1
        if tag is None:
            self.untagged(f"BAD {('[' + code + '] ') if code else ''}{text}")
        else:
            self.tagged(tag, "BAD", text, code)
        if self.bad_count >= MAX_BAD_COMMANDS:
            self.untagged("BYE Too many invalid commands")
            self.closing = True

    @property
    def selected(self) -> bool:
        return self.sel is not None

    # -- store access ---------------------------------------------------------------------------
    async def call(self, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """A blocking store call in a worker thread of the IMAP sessions' own small pool."""
        return await self.services.threads.call(functools.partial(fn, *args, **kw) if kw else fn, *args)

    def store_event(self, ev: Any) -> None:
        """Called by the store in the thread that made a change: hand it to our loop."""
        try:
            self.loop.call_soon_threadsafe(self.buffer_event, ev)
        except RuntimeError:  # the loop is gone: the session is over
            pass

    def buffer_event(self, ev: Any) -> None:
        if len(self.events) >= MAX_BUFFERED_EVENTS:
            # a session that says nothing for a long time while much changes: forget the
            # details, re-read the folder at the next chance
            self.events.clear()
            self.events_overflow = True
        else:
            self.events.append(ev)
        self.wake.set()

    def pending_events(self) -> None:
        """Mark the selected folder dirty when the store published changes to it that this
        client has not seen (our own changes are already in the view)."""
        events, self.events = self.events, []
        overflow, self.events_overflow = self.events_overflow, False
        if self.sel is None:
            return
        if overflow:
            self.sel.dirty = True
        for ev in events:
            self.note_event(ev)

    def note_event(self, ev: Any) -> None:
        sel = self.sel
        if sel is None:
            return
        if ev.old_name == sel.folder or (ev.folder == sel.folder and ev.kind.startswith("folder-")):
            sel.dirty = True
        if ev.folder != sel.folder or ev.uid is None:
            return
        st = sel.state.get(ev.uid)
        if ev.kind == "new" and ev.uid > sel.max_uid:
            sel.dirty = True
        elif ev.kind == "expunge" and st is not None and ev.uid not in sel.ghosts:
            sel.dirty = True
        elif ev.kind == "flags" and st is not None and st.flags != ev.flags:
            sel.dirty = True

    async def refresh(self, allow_expunge: bool, force: bool = False, with_uid: bool = True,
                      listing: storecalls.Listing | None = None) -> None:
        """Tell the client what changed in the selected folder. `listing`: list_and_claim's
        answer, fetched already (in the same hop as an APPEND)."""
        self.pending_events()
        sel = self.sel
        if sel is None:
            return
        if listing is None:
            box = self.box
            if force and box is not None and not sel.dirty and not (allow_expunge and sel.ghosts) \
                    and box.unchanged_nowait(sel.folder, sel.stamp):
                # (NOOP, CHECK, IDLE) neither the index nor the folder's directories changed
                # since the view's listing: a fresh one would be the same (perf: no hop)
                force, unforced = False, True
            else:
                unforced = False
            if not (sel.dirty or force) and box is not None and self.services.limiter is not None:
                # IMAP worker processes: a change another process made is in the index before its
                # client is answered, but its event may still be on the way here; the folder's
                # stamp tells (one indexed lookup), as Dovecot checks its index log at each command.
                now = box.stamp_nowait(sel.folder)
                if now is None or now != sel.stamp:
                    sel.dirty = True
            if not (sel.dirty or force or (allow_expunge and sel.ghosts)):
                if unforced and sel.unannounced:  # (as apply() would have sent them)
                    for line in sel.keyword_news():
                        self.send(line)
                return
            assert box is not None
            try:
                listing = await self.call(storecalls.list_and_claim, box, sel.folder, sel.uidvalidity,
                                          sel.max_uid, sel.readonly or sel.rev2)
            except store_api.NoSuchFolder:
                listing = None
        if listing is None:
            # deleted, renamed, or replaced by another folder of that name (a new UIDVALIDITY):
            # the client's UIDs mean nothing any more (Dovecot also ends the session)
            self.untagged("BYE [CLOSED] The selected mailbox was deleted, renamed or replaced")
            self.closing = True
            return
        infos, floor, sel.stamp = listing
        for line in sel.apply(infos, allow_expunge, floor, with_uid=with_uid):
            self.send(line)

    # ---------------------------------------------------------------------------------------
    # any state

    async def cmd_capability(self, cmd: Command) -> None:
        self.untagged(f"CAPABILITY {self.capabilities()}")
        self.tagged(cmd.tag, "OK", "Capability completed")

    async def cmd_noop(self, cmd: Command) -> None:
        await self.refresh(allow_expunge=True, force=True)
        self.tagged(cmd.tag, "OK", f"{cmd.name} completed")

    async def cmd_logout(self, cmd: Command) -> None:
        self.untagged("BYE Logging out")
        self.tagged(cmd.tag, "OK", "Logout completed")
        self.closing = True
        self.state = "logout"

    async def cmd_id(self, cmd: Command) -> None:
        self.untagged(b"ID " + response.encode([b"name", SERVER_NAME.encode()]))
        self.tagged(cmd.tag, "OK", "ID completed")

    # ---------------------------------------------------------------------------------------
    # not authenticated

    async def cmd_starttls(self, cmd: Command) -> None:
        if self.tls is None or self.secure:
            self.bad(cmd.tag, "TLS is not available" if self.tls is None else "TLS is already active")
            return
        self.tagged(cmd.tag, "OK", "Begin TLS negotiation now")
        await self.flush()
        self.inp.forget_buffered()  # nothing sent in the clear may count as sent over TLS
        assert isinstance(self.writer, asyncio.StreamWriter)  # (COMPRESS only after login)
        await self.writer.start_tls(self.tls)
        self.secure = True

    async def cmd_login(self, cmd: Command) -> None:
        if not self.plaintext_ok():
            self.tagged(cmd.tag, "NO", "Plaintext authentication disallowed on non-secure connections",
                        "PRIVACYREQUIRED")
            return
        try:
            user = cmd.args["user"].decode("utf-8")
            password = cmd.args["password"].decode("utf-8")
        except UnicodeDecodeError:
            await self.auth.refuse(self.address, "")
            self.login_failed(cmd.tag)
            return
        await self.login(cmd.tag, user, password)

    async def cmd_authenticate(self, cmd: Command) -> None:
        if cmd.args["mechanism"] != "PLAIN":
            self.tagged(cmd.tag, "NO", "Unsupported authentication mechanism", "CANNOT")
            return
        if not self.plaintext_ok():
            self.tagged(cmd.tag, "NO", "Plaintext authentication disallowed on non-secure connections",
                        "PRIVACYREQUIRED")
            return
        initial = cmd.args["initial"]
        if initial is None:
            self.send(b"+ \r\n")
            await self.flush()
            try:
                initial = await self.inp.line()
            except LineTooLong:  # the client's fault, not ours: BAD, and the session goes on
                self.bad(cmd.tag, "Authentication response too long")
                return
            except TimeoutError:  # the login deadline passed while we waited for the response
                self.tagged(cmd.tag, "NO", "Authentication timed out")
                self.untagged("BYE Autologout; idle for too long")
                self.closing = True
                return
            if initial.strip() == b"*":
                self.bad(cmd.tag, "Authentication canceled")
                return
        elif initial == b"=":
            initial = b""
        try:
            authzid, authcid, passwd = decode_plain(initial.strip())
        except ValueError as exc:
            self.bad(cmd.tag, str(exc))
            return
        if authzid and authzid != authcid:
            await self.auth.refuse(self.address, authcid)  # no proxy logins
            self.login_failed(cmd.tag)
            return
        await self.login(cmd.tag, authcid, passwd)

    def login_failed(self, tag: bytes) -> None:
        self.auth_failures += 1
        metrics.login(self.ctx.protocol, False)
        self.tagged(tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED")
        if self.auth_failures >= MAX_AUTH_FAILURES:
            self.untagged("BYE Too many authentication failures")
            self.closing = True

    async def login(self, tag: bytes, user: str, password: str) -> None:
        try:
            good = await self.auth.login(self.address, user, password)
        except Exception:  # noqa: BLE001
            log.exception("users database failed")
            self.tagged(tag, "NO", "Authentication temporarily unavailable", "UNAVAILABLE")
            return
        if not good:
            self.login_failed(tag)
            return
        metrics.login(self.ctx.protocol, True)
        try:
            canonical = str(self.ctx.users.canonical(user))
        except (AttributeError, ValueError):
            canonical = user.strip().lower()
        counts = self.services.by_user
        cap = self.settings.imap_max_per_user or MAX_CONNECTIONS_PER_USER
        limiter = self.services.limiter
        if limiter is not None:  # IMAP worker processes: the main process counts for all
            if not await limiter.acquire("user", canonical, cap):
                self.tagged(tag, "NO", "Too many connections for this user", "LIMIT")
                return
        elif counts.get(canonical, 0) >= cap:
            self.tagged(tag, "NO", "Too many connections for this user", "LIMIT")
            return
        try:
            self.box = await self.call(self.ctx.store.mailbox, canonical)
        except Exception:  # noqa: BLE001
            log.exception("opening the mailbox of %s failed", canonical)
            if limiter is not None:
                limiter.release("user", canonical)
            self.tagged(tag, "NO", "Mailbox temporarily unavailable", "UNAVAILABLE")
            return
        counts[canonical] = counts.get(canonical, 0) + 1
        self.user = canonical
        self.loader = MessageLoader(self.box, canonical, self.services.headers)
        self.subscription = self.ctx.store.subscribe(self.store_event, user=canonical)
        self.state = "auth"
        self.inp.deadline = None
        log.info("imap login %s from %s", canonical, self.address)
        self.tagged(tag, "OK", "Logged in", f"CAPABILITY {self.capabilities()}")

    # ---------------------------------------------------------------------------------------
    # authenticated

    async def cmd_enable(self, cmd: Command) -> None:
        enabled = []
        for cap in cmd.args["capabilities"]:
            if cap == "CONDSTORE" and not self.condstore:
                self.condstore = True
                if self.sel is not None:
                    self.sel.condstore = True
                enabled.append(cap)
            elif cap == "QRESYNC" and not self.qresync:
                await qresync.enable(self)
                enabled.append(cap)
            elif cap == rev2.ENABLE_NAME and not self.rev2:
                self.rev2 = True
                if self.sel is not None:  # from now on no \Recent there either
                    self.sel.rev2 = True
                    self.sel.recent.clear()
                enabled.append(rev2.CAPABILITIES[0])
        self.untagged("ENABLED" + "".join(" " + c for c in enabled))
        self.tagged(cmd.tag, "OK", "Enabled")

    async def cmd_namespace(self, cmd: Command) -> None:
        self.untagged(b'NAMESPACE (("" ".")) NIL NIL')
        self.tagged(cmd.tag, "OK", "Namespace completed")

    def mailbox_name(self, name: str) -> bytes:
        return rev2.encode_name(name) if self.rev2 else response.astring(mutf7.encode(name))

    async def cmd_select(self, cmd: Command) -> None:
        assert self.box is not None
        if cmd.args.get("qresync") and not self.qresync:  # RFC 7162 3.2.5
            self.bad(cmd.tag, "QRESYNC parameter without ENABLE QRESYNC")
            return
        readonly = cmd.name == "EXAMINE"
        if self.sel is not None:
            self.sel = None
            self.state = "auth"
            self.untagged("OK [CLOSED] Previous mailbox closed")
        name = cmd.args["mailbox"]
        info, infos, floor, stamp = storecalls.select_nowait(self.box, name, readonly or self.rev2) \
            or await self.call(storecalls.select_data, self.box, name, readonly or self.rev2)  # rev2: no claim
        view = MailboxView(info.name, readonly, info.uidvalidity)
        view.stamp = stamp
        view.load(infos)
        if cmd.args.get("condstore"):
            self.condstore = True
        view.condstore = self.condstore
        view.qresync = self.qresync
        view.rev2 = self.rev2
        view.recent = view.recent_above(floor) if floor is not None and not self.rev2 else set()
        for line in view.flag_lines():  # FLAGS, PERMANENTFLAGS: the keywords this client knows
            self.send(line)
        self.untagged(f"{view.exists} EXISTS")
        if self.rev2:  # RFC 9051 6.3.2: LIST instead of RECENT and UNSEEN
            self.send(rev2.select_list_line(self.mailbox_name(info.name), SEPARATOR, rev2.folder_attrs(info)))
        else:
            self.untagged(f"{len(view.recent)} RECENT")
        unseen = None if self.rev2 else view.first_unseen()
        if unseen is not None:
            self.untagged(f"OK [UNSEEN {unseen}] First unseen")
        self.untagged(f"OK [UIDVALIDITY {info.uidvalidity}] UIDs valid")
        self.untagged(f"OK [UIDNEXT {info.uidnext}] Predicted next UID")
        if self.condstore:
            self.untagged(f"OK [HIGHESTMODSEQ {info.highestmodseq}] Highest")
        if cmd.args.get("qresync"):
            await qresync.after_select(self, view, cmd.args["qresync"])
        self.events.clear()  # what happened before this listing is in it
        self.events_overflow = False
        self.sel = view
        self.state = "selected"
        self.tagged(cmd.tag, "OK", f"{cmd.name} completed", "READ-ONLY" if readonly else "READ-WRITE")

    async def cmd_create(self, cmd: Command) -> None:
        assert self.box is not None
        name = cmd.args["mailbox"].rstrip(SEPARATOR)
        if name.upper() == "INBOX":
            raise store_api.FolderExists("INBOX exists")
        await self.call(self.box.create_folder, name)
        self.tagged(cmd.tag, "OK", "Create completed")

    async def cmd_delete(self, cmd: Command) -> None:
        assert self.box is not None
        name = cmd.args["mailbox"]
        try:
            await self.call(self.box.delete_folder, name)
        except store_api.FolderNotEmpty as exc:
            if not (self.rev2 and name != "INBOX"):
                raise
            self.tagged(cmd.tag, "NO", str(exc), rev2.DELETE_CHILDREN_CODE)
            return
        self.tagged(cmd.tag, "OK", "Delete completed")

    async def cmd_rename(self, cmd: Command) -> None:
        assert self.box is not None
        await self.call(self.box.rename_folder, cmd.args["old"], cmd.args["new"])
        self.tagged(cmd.tag, "OK", "Rename completed")

    async def cmd_subscribe(self, cmd: Command) -> None:
        assert self.box is not None
        await self.call(self.box.set_subscribed, cmd.args["mailbox"], cmd.name == "SUBSCRIBE")
        self.tagged(cmd.tag, "OK", f"{cmd.name.title()} completed")

    async def cmd_lsub(self, cmd: Command) -> None:
        """LSUB (LIST in all its forms is cmd_list_extended, listext.py)."""
        assert self.box is not None
        reference, patterns = cmd.args["reference"], cmd.args["patterns"]
        folders = await self.call(self.box.folders)
        subscribed = set(await self.call(self.box.subscriptions))
        matchers = [list_matcher(reference, p) for p in patterns]
        names = {f.name for f in folders}
        for f in folders:
            if f.name not in subscribed or not any(m(f.name) for m in matchers):
                continue
            attrs = "\\HasChildren" if f.has_children else "\\HasNoChildren"
            self.untagged(f"LSUB ({attrs}) \"{SEPARATOR}\" ".encode() + self.mailbox_name(f.name))
        # subscriptions to folders that no longer exist, and unsubscribed parents (RFC 3501 6.3.9)
        for name in sorted(subscribed - names):
            if any(m(name) for m in matchers):
                self.untagged(f"LSUB (\\Noselect) \"{SEPARATOR}\" ".encode() + self.mailbox_name(name))
        for name in lsub_parents(subscribed, lambda n: any(m(n) for m in matchers), SEPARATOR):
            self.untagged(f"LSUB (\\Noselect) \"{SEPARATOR}\" ".encode() + self.mailbox_name(name))
        self.tagged(cmd.tag, "OK", "LSUB completed")

    async def cmd_status(self, cmd: Command) -> None:
        assert self.box is not None
        name, items = await self.call(statusitems.status_items, self.box, cmd.args["mailbox"], cmd.args["items"])
        self.untagged(b"STATUS " + self.mailbox_name(name) + f" ({' '.join(items)})".encode())
        self.tagged(cmd.tag, "OK", "Status completed")

    async def cmd_list_extended(self, cmd: Command) -> None:
        """LIST in all its forms (listext.py); LSUB is cmd_lsub."""
        assert self.box is not None
        patterns = cmd.args["patterns"]
        if len(patterns) == 1 and patterns[0] == "":
            self.untagged(f'LIST (\\Noselect) "{SEPARATOR}" ""')
            self.tagged(cmd.tag, "OK", "List completed")
            return
        req = listext.Request(cmd.args["reference"], patterns, frozenset(cmd.args["selection"]),
                              frozenset(cmd.args["returns"]), bool(cmd.args.get("extended")))

        def answer(box: store_api.Mailbox) -> list[listext.Entry]:  # off the loop: matching costs CPU
            folders = [listext.Folder(f.name, f.special_use) for f in box.folders()]
            return listext.entries(req, folders, box.subscriptions(), SEPARATOR)

        found = await self.call(answer, self.box)
        status_items = cmd.args.get("status_items") or ()
        statuses: dict[str, list[str]] = {}
        if status_items:  # RFC 5819: after each selectable folder's LIST response
            statuses = await self.call(statusitems.status_of_many, self.box,
                                       [e.name for e in found if e.selectable], status_items)
        for e in found:
            line = f"LIST ({' '.join(e.attrs)}) \"{SEPARATOR}\" ".encode() + self.mailbox_name(e.name)
            if e.childinfo:
                line += b' (CHILDINFO ("SUBSCRIBED"))'
            self.untagged(line)
            if e.name in statuses:
                self.untagged(b"STATUS " + self.mailbox_name(e.name) + f" ({' '.join(statuses[e.name])})".encode())
            await self.maybe_flush()
        self.tagged(cmd.tag, "OK", "List completed")

    async def cmd_append(self, cmd: Command) -> None:
        assert self.box is not None
        if len(cmd.args.get("messages", ())) > 1:
            await self.cmd_multiappend(cmd)
            return
        name = cmd.args["mailbox"]
        message: bytes = cmd.args["message"]
        date: _dt.datetime | None = cmd.args["date"]
        when = date.timestamp() if date is not None else None
        if any(not f.startswith("\\") for f in cmd.args["flags"]):
            folder = await self.call(self.box.find_folder, name)
            have = await self.call(storecalls.folder_keywords, self.box, folder) if folder is not None else None
            if have is not None and self.keyword_refusal(cmd, have, cmd.args["flags"]):
                return
        sel = self.sel
        selected = (sel.folder, sel.uidvalidity, sel.max_uid, sel.readonly or sel.rev2) if sel is not None else None
        found = await self.call(storecalls.append, self.box, name, message, cmd.args["flags"], when, selected)
        if found is None:
            self.tagged(cmd.tag, "NO", "Mailbox doesn't exist", "TRYCREATE")
            return
        info, uidvalidity, listing = found
        if info is None:
            self.tagged(cmd.tag, "NO", "Empty message", "CANNOT")
            return
        await self.refresh(allow_expunge=True, listing=listing if sel is not None and self.sel is sel else None)
        self.tagged(cmd.tag, "OK", "Append completed", f"APPENDUID {uidvalidity} {info.uid}")

    async def cmd_multiappend(self, cmd: Command) -> None:
        """RFC 3502: all the messages in one transaction, or none (multiappend.py)."""
        assert self.box is not None
        try:
            uidvalidity, infos = await self.call(multiappend.append_all, self.box, cmd.args["mailbox"],
                                                 cmd.args["messages"])
        except multiappend.Refused as exc:
            self.tagged(cmd.tag, "NO", exc.text, exc.code)
            return
        await self.refresh(allow_expunge=True)
        uids = esearch.sequence_set([i.uid for i in infos], ordered=True)
        self.tagged(cmd.tag, "OK", "Append completed", f"APPENDUID {uidvalidity} {uids}")

    async def cmd_idle(self, cmd: Command) -> None:
        self.send(response.continuation("idling"))
        # forced: a change another process made just before may not have reached us as an event
        await self.refresh(allow_expunge=True, force=True)
        await self.flush()
        line_task: asyncio.Task[bytes] = asyncio.ensure_future(self.inp.line())
        try:
            while True:
                self.wake.clear()
                if self.events or self.events_overflow:
                    self.wake.set()
                wake_task = asyncio.ensure_future(self.wake.wait())
                done, _ = await asyncio.wait({line_task, wake_task}, timeout=IDLE_TIMEOUT,
                                             return_when=asyncio.FIRST_COMPLETED)
                if not wake_task.done():
                    wake_task.cancel()
                if not done:
                    self.untagged("BYE Autologout; idle for too long")
                    self.closing = True
                    return
                if wake_task in done:
                    await self.refresh(allow_expunge=True)
                    await self.flush()
                if line_task in done:
                    line = line_task.result()
                    if line.strip().upper() == b"DONE":
                        self.tagged(cmd.tag, "OK", "Idle completed")
                    else:
                        self.bad(cmd.tag, "Expected DONE")
                    return
        finally:
            if not line_task.done():
                line_task.cancel()
                try:
                    await line_task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass

    # ---------------------------------------------------------------------------------------
    # selected

    async def cmd_check(self, cmd: Command) -> None:
        await self.refresh(allow_expunge=True, force=True)
        self.tagged(cmd.tag, "OK", "Check completed")

    async def cmd_close(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        if not self.sel.readonly:
            await self.call(self.box.expunge, self.sel.folder)
        self.sel = None
        self.state = "auth"
        self.tagged(cmd.tag, "OK", f"{cmd.name.title()} completed")

    async def cmd_unselect(self, cmd: Command) -> None:
        self.sel = None
        self.state = "auth"
        self.tagged(cmd.tag, "OK", "Unselect completed")

    def keyword_refusal(self, cmd: Command, have: Any, adding: Any) -> bool:
        """NO [LIMIT] when the flags would give the folder more than MAX_KEYWORDS keywords."""
        if too_many_keywords(have, adding):
            self.tagged(cmd.tag, "NO", f"Too many keywords in this mailbox (at most {MAX_KEYWORDS})", "LIMIT")
            return True
        return False

    def readonly_refusal(self, cmd: Command) -> bool:
        assert self.sel is not None
        if self.sel.readonly:
            self.tagged(cmd.tag, "NO", "Mailbox is read-only", "READ-ONLY")
            return True
        return False

    async def cmd_expunge(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        if self.readonly_refusal(cmd):
            return
        targets = [uid for _s, uid in self.sel.resolve(cmd.args["set"], True)] if cmd.uid else None
        done, before, after = storecalls.expunge_nowait(self.box, self.sel.folder, targets) \
            or await self.call(storecalls.expunge, self.box, self.sel.folder, targets)
        for line in self.sel.remove(done):
            self.send(line)
        self.sel.advance(before, after, 1 if done else 0)
        self.pending_events()
        self.tagged(cmd.tag, "OK", "Expunge completed")

    def search_views(self) -> list[searchmod.MessageView]:
        """The selected folder's messages as SEARCH (and SORT, THREAD) sees them; the bytes are
        read on first need, in the thread that evaluates."""
        assert self.box is not None and self.sel is not None
        sel, loader = self.sel, self.loader
        assert loader is not None
        folder, uidvalidity = sel.folder, sel.uidvalidity

        views = []
        for i, uid in enumerate(sel.uids):
            st = sel.state[uid]
            if uid in sel.ghosts:
                continue
            views.append(searchmod.MessageView(
                i + 1, uid, st.flags, _dt.datetime.fromtimestamp(st.internal_date, _dt.timezone.utc),
                recent=uid in sel.recent, modseq=st.modseq, known_size=st.size,
                savedate=searchmod.from_epoch(st.save_date),
                loader=functools.partial(loader.read, folder, uid),
                header_loader=functools.partial(loader.header, folder, uidvalidity, uid)))
        return views

    async def run_search(self, key: Any) -> list[searchmod.MessageView]:
        """The messages matching `key`, evaluated in a worker thread (off the event loop)."""
        assert self.sel is not None
        sel = self.sel
        views = self.search_views()

        def run() -> list[searchmod.MessageView]:
            out = []
            for v in views:
                try:
                    if searchmod.matches(key, v, sel.exists, sel.max_uid):
                        out.append(v)
                except store_api.NoSuchMessage:
                    continue
                finally:
                    v.release()
            return out

        return await self.call(run)

    def bind_saved(self, cmd: Command) -> Command:
        """SEARCHRES: `$` in the command's sequence set or search key bound to the messages the
        last SEARCH RETURN (SAVE) in this selection found (none after another SELECT)."""
        sel = self.sel
        seqset, key = cmd.args.get("set"), cmd.args.get("key")
        if sel is None or not (isinstance(seqset, SavedResult) or searchres.uses_saved(key)):
            return cmd
        saved = self.saved[1] if self.saved is not None and self.saved[0] is sel else []
        uids = [u for u in saved if u in sel.state]
        args = dict(cmd.args)
        by_uid = cmd.uid
        if isinstance(seqset, SavedResult):
            args["set"] = searchres.number_set(uids if cmd.uid else [sel.seq_of(u) for u in uids])
            by_uid = by_uid or not uids  # nothing saved: no messages, not BAD in an empty folder
        if key is not None:
            args["key"] = searchres.bind_key(key, uids)
        return dataclasses.replace(cmd, args=args, uid=by_uid)

    async def cmd_search(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        key = cmd.args["key"]
        returns = cmd.args.get("returns")
        options = esearch.parse_returns(returns, cmd.tag) if returns is not None else None
        if options is None and self.rev2:  # RFC 9051 6.4.4: ESEARCH, never `* SEARCH`
            options = rev2.SEARCH_RETURNS
        if options is not None and "SAVE" in options:
            self.saved = (self.sel, [])  # a search that fails saves nothing (RFC 5182 2.1)
        found = await self.run_search(key)
        if options is not None and "SAVE" in options:
            self.saved = (self.sel, esearch.to_save(options, [v.uid for v in found]))
        modseq = max(v.modseq for v in found) if _uses_modseq(key) and found else None
        numbers = [v.uid if cmd.uid else v.seq for v in found]
        if options is None:
            text = "SEARCH " + " ".join(map(str, numbers))
            if modseq is not None:
                text += f" (MODSEQ {modseq})"
            self.untagged(text.rstrip())
        else:
            line = esearch.response(cmd.tag, cmd.uid, options, numbers, modseq)
            if line is not None:
                self.untagged(line)
        self.tagged(cmd.tag, "OK", "Search completed")

    async def cmd_sort(self, cmd: Command) -> None:
        """SORT, UID SORT (RFC 5256, SORT=DISPLAY RFC 5957) and with RETURN, ESORT (RFC 5267)."""
        assert self.box is not None and self.sel is not None
        returns = cmd.args["returns"]
        options = esearch.parse_returns(returns, cmd.tag) if returns is not None else None
        if options is not None and "SAVE" in options:
            self.saved = (self.sel, [])
        key, sel = cmd.args["key"], self.sel
        found = await self.run_search(key)
        ordered = await self.call(sortmod.sort, found, cmd.args["criteria"], store_api.NoSuchMessage)
        numbers = [v.uid if cmd.uid else v.seq for v in ordered]
        modseq = max(v.modseq for v in ordered) if _uses_modseq(key) and ordered else None
        if options is None:
            text = "SORT " + " ".join(map(str, numbers))
            if modseq is not None:
                text += f" (MODSEQ {modseq})"
            self.untagged(text.rstrip())
        else:
            if "SAVE" in options:
                self.saved = (sel, esearch.to_save(options, [v.uid for v in ordered], ordered=True))
            line = esearch.response(cmd.tag, cmd.uid, options, numbers, modseq, ordered=True)
            if line is not None:
                self.untagged(line)
        self.tagged(cmd.tag, "OK", "Sort completed")

    async def cmd_thread(self, cmd: Command) -> None:
        """THREAD, UID THREAD (RFC 5256): ORDEREDSUBJECT and REFERENCES, in a worker thread."""
        assert self.box is not None and self.sel is not None
        found = await self.run_search(cmd.args["key"])
        threads = await self.call(threadmod.thread, found, cmd.args["algorithm"], store_api.NoSuchMessage)
        text = threadmod.format_threads(threads, cmd.uid)
        self.untagged(f"THREAD {text}".rstrip())
        self.tagged(cmd.tag, "OK", "Thread completed")

    async def cmd_fetch(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        sel, box = self.sel, self.box
        atts = list(cmd.args["atts"])
        changedsince = cmd.args["changedsince"]
        names = {a.name for a in atts}
        if changedsince is None and not cmd.args.get("vanished") and "FLAGS" in names and names <= {"UID", "FLAGS"}:
            # from the view alone (no data, no MODSEQ): a client syncing a big folder
            spans = sel.resolve_spans(cmd.args["set"], cmd.uid)
            ghosts, uids = sel.ghosts, sel.uids
            expunged = bool(ghosts) and any(u in ghosts for i, j in spans for u in uids[i:j])
            await self.fetch_flags_fast(spans, cmd.uid or "UID" in names)
            self.fetch_done(cmd.tag, expunged)
            return
        targets = sel.resolve(cmd.args["set"], cmd.uid)
        if cmd.args.get("vanished"):
            if not self.qresync:
                self.bad(cmd.tag, "VANISHED without ENABLE QRESYNC")
                return
            await qresync.fetch_vanished(self, changedsince, cmd.args["set"])
        if changedsince is not None:
            self.condstore = sel.condstore = True
            targets = [(s, u) for s, u in targets if sel.state[u].modseq > changedsince]
        with_modseq = self.condstore and (changedsince is not None or any(a.name == "MODSEQ" for a in atts))
        need_data = fetchmod.needs_data(atts)
        # a message expunged elsewhere that this client still sees (a ghost) is served from the
        # view and the caches until it is told (as Dovecot does): OK [EXPUNGEISSUED], never NO
        expunged = bool(sel.ghosts) and any(u in sel.ghosts for _s, u in targets)
        # BODY[...] (not PEEK), RFC822 and RFC822.TEXT set \Seen first, and report the flags
        if not sel.readonly and any(a.sets_seen for a in atts):
            unseen = [u for _s, u in targets if u not in sel.ghosts and "\\Seen" not in sel.state[u].flags]
            if unseen:
                changed = await self.call(box.store_flags, sel.folder, unseen, ["\\Seen"], "add")
                for info in changed:
                    sel.update(info.uid, info.flags, info.modseq)
                if not any(a.name == "FLAGS" for a in atts):
                    atts.append(FetchAtt("FLAGS"))
        for line in sel.keyword_news():  # a keyword new to this client: FLAGS before any FETCH
            self.send(line)
        plan = fetchmod.plan(atts, cmd.uid, with_modseq)
        line, recent = plan.line, sel.recent
        for start in range(0, len(targets), FETCH_BATCH):
            batch = targets[start:start + FETCH_BATCH]
            datas = fetchmod.datas_of(sel.state, sel.ghosts, batch)
            if need_data:
                datas = await self.load(sel, datas, plan)
            if plan.tree:  # MIME trees and BODYSTRUCTURE are built off the event loop
                await self.call(fetchmod.prepare, datas, atts)
            if not expunged:
                expunged = any(d.expunged for d in datas)
            self.send(b"".join([line(seq, data, uid in recent) for (seq, uid), data in zip(batch, datas)]))
            await self.maybe_flush()
        self.fetch_done(cmd.tag, expunged)

    def fetch_done(self, tag: bytes, expunged: bool) -> None:
        if expunged:
            self.tagged(tag, "OK", "Some messages were already expunged", "EXPUNGEISSUED")
        else:
            self.tagged(tag, "OK", "Fetch completed")

    async def fetch_flags_fast(self, spans: list[tuple[int, int]], with_uid: bool) -> None:
        """FETCH (FLAGS) / UID FETCH (FLAGS) of these spans of the view's positions
        (MailboxView.resolve_spans), from the view alone. Each distinct flag set's atoms are
        made once; lines are formatted as text and handed to the transport FLAGS_CHUNK at a
        time, so the client reads while the rest is made (perf: `UID FETCH 1:* (FLAGS)` of
        100,000 messages was formatted whole before its first byte left, from a (seq, uid)
        tuple per message)."""
        sel = self.sel
        assert sel is not None
        for line in sel.keyword_news():
            self.send(line)
        state, recent, uids = sel.state, sel.recent, sel.uids
        plain, marked = _FlagAtoms(False), _FlagAtoms(True)  # marked: UIDs \\Recent to this view
        for first, end in spans:
            for i in range(first, end, FLAGS_CHUNK):
                j = min(i + FLAGS_CHUNK, end)
                pairs = zip(range(i + 1, j + 1), uids[i:j])
                if with_uid:
                    text = "".join([f"* {s} FETCH (UID {u} FLAGS {(marked if u in recent else plain)[state[u].flags]})\r\n"
                                    for s, u in pairs])
                else:
                    text = "".join([f"* {s} FETCH (FLAGS {(marked if u in recent else plain)[state[u].flags]})\r\n"
                                    for s, u in pairs])
                self.send(text.encode("ascii"))
                await self.maybe_flush()

    async def load(self, sel: MailboxView, datas: list[fetchmod.MessageData],
                   plan: fetchmod.Plan) -> list[fetchmod.MessageData]:
        """The bytes (or headers) of a FETCH batch, through the loader: in the loop's thread
        when the batch is cheap (else the loader raises WouldBlock), else in a worker thread."""
        loader = self.loader
        assert loader is not None
        folder, uidvalidity = sel.folder, sel.uidvalidity
        try:
            return loader.load(folder, uidvalidity, datas, plan.headers_only, True, plan.questions)
        except WouldBlock:
            pass
        return await self.call(loader.load, folder, uidvalidity, datas, plan.headers_only, False, plan.questions)

    async def cmd_store(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        if self.readonly_refusal(cmd):
            return
        sel = self.sel
        targets = [(s, u) for s, u in sel.resolve(cmd.args["set"], cmd.uid) if u not in sel.ghosts]
        mode = {"+": "add", "-": "remove", "=": "replace"}[cmd.args["mode"]]
        unchangedsince = cmd.args["unchangedsince"]
        if mode != "remove" and any(not f.startswith("\\") for f in cmd.args["flags"]) \
                and self.keyword_refusal(cmd, sel.keywords(), cmd.args["flags"]):
            return
        if unchangedsince is not None:
            self.condstore = sel.condstore = True
        uids = [u for _s, u in targets]
        changed, before, after = \
            storecalls.store_flags_nowait(self.box, sel.folder, uids, cmd.args["flags"], mode, unchangedsince) \
            or await self.call(storecalls.store_flags, self.box, sel.folder, uids, cmd.args["flags"], mode,
                               unchangedsince)
        for info in changed:
            sel.update(info.uid, info.flags, info.modseq)
        sel.advance(before, after, len(changed))
        for line in sel.keyword_news():  # a new keyword: FLAGS before the FETCH naming it
            self.send(line)
        modified = []
        if unchangedsince is not None:
            changed_uids = {i.uid for i in changed}
            modified = [u for _s, u in targets if u not in changed_uids and sel.state[u].modseq > unchangedsince]
        if not cmd.args["silent"] or self.condstore:
            silent = cmd.args["silent"]
            changed_uids = {i.uid for i in changed}
            for seq, uid in targets:
                if uid in modified or (silent and uid not in changed_uids):
                    continue
                st = sel.state[uid]
                items = []
                if cmd.uid or self.qresync:  # RFC 7162 3.2.4: UID in FETCH for flag changes
                    items.append(b"UID %d" % uid)
                if not silent:
                    items.append(b"FLAGS " + fetchmod.flag_atoms(st.flags, uid in sel.recent))
                if self.condstore:
                    items.append(b"MODSEQ (%d)" % st.modseq)
                self.send(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
        self.pending_events()
        if modified:
            self.tagged(cmd.tag, "OK", "Conditional store failed", "MODIFIED " + esearch.sequence_set(modified))
        else:
            self.tagged(cmd.tag, "OK", "Store completed")

    async def cmd_copy(self, cmd: Command) -> None:
        assert self.box is not None and self.sel is not None
        sel = self.sel
        is_move = cmd.name == "MOVE"
        if is_move and self.readonly_refusal(cmd):
            return
        targets = [(s, u) for s, u in sel.resolve(cmd.args["set"], cmd.uid) if u not in sel.ghosts]
        dest = await self.call(self.box.find_folder, cmd.args["mailbox"])
        if dest is None:
            self.tagged(cmd.tag, "NO", "Mailbox doesn't exist", "TRYCREATE")
            return
        uids = [u for _s, u in targets]
        if not uids:
            self.tagged(cmd.tag, "OK", f"No messages {'moved' if is_move else 'copied'}")
            return
        adding = {f for u in uids for f in sel.state[u].flags if not f.startswith("\\")}
        if adding and self.keyword_refusal(cmd, await self.call(storecalls.folder_keywords, self.box, dest), adding):
            return
        pairs = await self.call(self.box.move if is_move else self.box.copy, sel.folder, uids, dest)
        dinfo = await self.call(self.box.folder, dest)
        code = None
        if pairs:
            code = f"COPYUID {dinfo.uidvalidity} {esearch.sequence_set([p[0] for p in pairs], ordered=True)} " \
                   f"{esearch.sequence_set([p[1] for p in pairs], ordered=True)}"
        if is_move:
            if code:
                self.untagged(f"OK [{code}] Moved")
            for line in sel.remove([p[0] for p in pairs]):
                self.send(line)
            await self.refresh(allow_expunge=True)
            self.tagged(cmd.tag, "OK", "Move completed")
        else:
            await self.refresh(allow_expunge=cmd.uid)
            self.tagged(cmd.tag, "OK", "Copy completed", code)


def _uses_modseq(key: Any) -> bool:
    if key.op == "MODSEQ":
        return True
    return any(_uses_modseq(a) for a in key.args if hasattr(a, "op"))


COMMANDS: dict[str, Route[ImapSession]] = {
    "CAPABILITY": Route(ANY, ImapSession.cmd_capability),
    "NOOP": Route(ANY, ImapSession.cmd_noop),
    "LOGOUT": Route(ANY, ImapSession.cmd_logout),
    "ID": Route(ANY, ImapSession.cmd_id),
    "STARTTLS": Route((NOT_AUTHENTICATED,), ImapSession.cmd_starttls),
    "LOGIN": Route((NOT_AUTHENTICATED,), ImapSession.cmd_login),
    "AUTHENTICATE": Route((NOT_AUTHENTICATED,), ImapSession.cmd_authenticate),
    "ENABLE": Route(AUTH, ImapSession.cmd_enable),
    "NAMESPACE": Route(AUTH, ImapSession.cmd_namespace),
    "SELECT": Route(AUTH, ImapSession.cmd_select),
    "EXAMINE": Route(AUTH, ImapSession.cmd_select),
    "CREATE": Route(AUTH, ImapSession.cmd_create),
    "DELETE": Route(AUTH, ImapSession.cmd_delete),
    "RENAME": Route(AUTH, ImapSession.cmd_rename),
    "SUBSCRIBE": Route(AUTH, ImapSession.cmd_subscribe),
    "UNSUBSCRIBE": Route(AUTH, ImapSession.cmd_subscribe),
    "LIST": Route(AUTH, ImapSession.cmd_list_extended),
    "LSUB": Route(AUTH, ImapSession.cmd_lsub),
    "STATUS": Route(AUTH, ImapSession.cmd_status),
    "APPEND": Route(AUTH, ImapSession.cmd_append),
    "IDLE": Route(AUTH, ImapSession.cmd_idle),
    "CHECK": Route(SEL, ImapSession.cmd_check),
    "CLOSE": Route(SEL, ImapSession.cmd_close),
    "UNSELECT": Route(SEL, ImapSession.cmd_unselect),
    "EXPUNGE": Route(SEL, ImapSession.cmd_expunge),
    "SEARCH": Route(SEL, ImapSession.cmd_search),
    "SORT": Route(SEL, ImapSession.cmd_sort),
    "THREAD": Route(SEL, ImapSession.cmd_thread),
    "FETCH": Route(SEL, ImapSession.cmd_fetch),
    "STORE": Route(SEL, ImapSession.cmd_store),
    "COPY": Route(SEL, ImapSession.cmd_copy),
    "MOVE": Route(SEL, ImapSession.cmd_copy),
    "GETQUOTA": Route(AUTH, imapquota.cmd_getquota),
    "GETQUOTAROOT": Route(AUTH, imapquota.cmd_getquotaroot),
    "SETQUOTA": Route(AUTH, imapquota.cmd_setquota),
    "COMPRESS": Route(AUTH, compress.cmd_compress),
}


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, ctx: SessionContext) -> None:
    """What `mailsift serve` calls for each imap/imaps connection."""
    await ImapSession(reader, writer, ctx).run()
