"""The pymilter class: collects one message, scans it at end-of-message, adds headers.

One instance per milter connection (Postfix opens one per SMTP session); libmilter, as `make
venv` builds it (deploy/build-libmilter.sh), runs each connection in a thread of its own.
Callbacks before end-of-message are @noreply: Postfix does not wait for them.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import Milter

from mailsift.milter.scan import Scanner, scan
from mailsift.milter.settings import MilterSettings
from mailsift.ops import metrics
from mailsift.store.maildir import to_crlf
from mailsift.verdict import (VERDICT_HEADER_PREFIXES, Verdict, VirusResult, is_verdict_header, untrusted_name,
                              verdict_headers)

log = logging.getLogger("mailsift.milter")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Runtime:
    """What every connection shares: settings, the scanner, parsed skip networks."""

    settings: MilterSettings
    scanner: Scanner
    skip_networks: tuple[IPNetwork, ...] = field(default_factory=tuple)


def milter_value(value: str) -> str:
    """Header folding for libmilter: Postfix wants LF-separated continuation lines."""
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _guarded(func: Callable[..., int]) -> Callable[..., int]:
    """For callbacks before end-of-message: an exception is remembered (the message then gets
    a 451 at end-of-message) instead of leaving Postfix waiting for a reply."""
    import functools

    @functools.wraps(func)
    def wrapper(self: "MailsiftMilter", *args: Any) -> int:
        try:
            return func(self, *args)
        except Exception:
            self.failure = traceback.format_exc().rstrip()
            return Milter.CONTINUE
    return wrapper


_VERDICT_PREFIXES = tuple(p.encode("ascii") for p in VERDICT_HEADER_PREFIXES)
_LOG_UNSAFE = re.compile(r"[\x00-\x20\x7f]+")


class MailsiftMilter(Milter.Base):
    runtime: Runtime  # set on the class by make_factory()

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.failure: str | None = None  # traceback of a failed callback before eom
        self._reset()

    @classmethod
    def protocol_mask(cls) -> int:
        """pymilter's mask of protocol steps to keep, computed per class: pymilter caches it on
        the class it was first asked of, so a subclass would otherwise inherit its parent's."""
        mask = cls.__dict__.get("_protocol_mask")
        if mask is None:
            mask = Milter.P_RCPT_REJ | Milter.P_HDR_LEADSPC  # pymilter's defaults: both off
            for name, (nr, nc) in Milter.OPTIONAL_CALLBACKS.items():
                mask |= (nr | nc) & ~getattr(getattr(cls, name), "milter_protocol", 0)
            cls._protocol_mask = mask
        return mask

    @classmethod
    def symlists(cls) -> tuple[tuple[int, str], ...]:
        """(stage, macro names) for each callback marked @Milter.symlist, per class and once
        (negotiate() runs for every milter connection)."""
        lists = cls.__dict__.get("_symlists")
        if lists is None:
            lists = tuple((stage, " ".join(syms)) for name, stage in Milter.MACRO_CALLBACKS.items()
                          if (syms := getattr(getattr(cls, name), "_symlist", None)) is not None)
            cls._symlists = lists
        return lists

    def negotiate(self, opts: list[int]) -> int:
        """pymilter's negotiation, without its silent fallback: a failure to ask for the macro
        lists or the protocol steps is logged, then every step is taken (ALL_OPTS), slower
        but complete."""
        try:
            self._actions = opts[0]
            for stage, macros in self.symlists():
                # pymilter 1.0.5's Base.setsymlist() hands its C side bytes, which it refuses
                self._ctx.setsymlist(stage, macros)
            opts[1] = self._protocol = opts[1] & ~self.protocol_mask()
            opts[2] = opts[3] = 0
        except Exception:
            log.exception("milter negotiation failed; asking Postfix for every protocol step")
            return Milter.ALL_OPTS
        return Milter.CONTINUE

    def _reset(self) -> None:
        self.failure = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0  # bytes of the whole message seen (header block + body)
        self.kept = 0  # bytes kept for scanning
        self.truncated = False
        self.in_body = False
        self.message_id = "-"
        self.started = time.monotonic()
        self.eom_started = self.started
        self.timings = ""

    # -- collection ------------------------------------------------------------------------
    # Connect, HELO, MAIL, RCPT, DATA and end-of-headers are not asked for (@nocallback), so
    # Postfix sends nothing before the headers: each skipped stage saves a packet, a libmilter
    # read and a Python call holding the GIL per message (bench/milter_throughput.py,
    # docs/milter.md). When skip rules are configured, ClientAwareMilter below asks for connect
    # and MAIL FROM again to learn the client address and the SASL login.
    @Milter.nocallback
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE

    @Milter.nocallback
    def envfrom(self, mailfrom: str, *params: str) -> int:
        return Milter.CONTINUE

    @Milter.nocallback
    def envrcpt(self, to: str, *params: str) -> int:
        return Milter.CONTINUE

    @Milter.nocallback
    def eoh(self) -> int:
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    @_guarded
    def header(self, name: Any, value: Any) -> int:
        name_b = name.encode("ascii", "surrogateescape") if isinstance(name, str) else bytes(name)
        value_b = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
        self.headers.append((name_b, value_b))
        self._keep(len(name_b) + len(value_b) + 4, None)
        if name_b.lower() == b"message-id":
            # One log line per message: no whitespace or control characters from a stranger.
            self.message_id = _LOG_UNSAFE.sub("", value_b.decode("ascii", "replace"))[:200] or "-"
        return Milter.CONTINUE

    @Milter.noreply
    @_guarded
    def body(self, chunk: bytes) -> int:
        if not self.in_body:
            self.in_body = True
            self._keep(2, None)  # the blank line between header and body
        self._keep(len(chunk), chunk)
        return Milter.CONTINUE

    def client_skip(self) -> str | None:
        """Why this message is not scanned (skip_networks, skip_authenticated), or None."""
        return None

    def _macro(self, name: str) -> str | None:
        try:
            return self.getsymval(name) or None
        except Exception:
            return None

    def _keep(self, n: int, chunk: bytes | None) -> None:
        self.size += n
        limit = self.runtime.settings.max_scan_size
        if self.kept >= limit:
            self.truncated = True
            return
        if chunk is not None:
            room = limit - self.kept
            if len(chunk) > room:
                chunk = chunk[:room]
                self.truncated = True
            self.chunks.append(chunk)
            self.kept += len(chunk)
        else:
            self.kept += n

    def raw_message(self) -> bytes:
        head = b"".join(n + b": " + to_crlf(v) + b"\r\n" for n, v in self.headers)
        raw = head + b"\r\n" + b"".join(self.chunks)
        return raw[: self.runtime.settings.max_scan_size]

    # -- end of message --------------------------------------------------------------------
    # The queue id is the only macro read here. Naming it (setsymlist in the negotiation, which
    # needs Milter.SETSYMLIST in set_flags) makes Postfix send this milter, and only this one,
    # no macros at all at the other stages: its per-stage macro packets (connect, HELO, MAIL,
    # RCPT, DATA, end-of-headers) go even for stages the milter skips.
    @Milter.symlist("i")
    def eom(self) -> int:
        try:
            return self._eom()
        except Exception:
            log.error("queue_id=%s message_id=%s unexpected error, answering 451:\n%s",
                      self._queue_id(), self.message_id, traceback.format_exc().rstrip())
            metrics.milter_failure()
            try:
                self.setreply("451", "4.3.0", "Temporary content filter failure, try again later")
            except Exception:
                pass
            return Milter.TEMPFAIL
        finally:
            self._reset()  # the next message on this connection starts from nothing

    def _queue_id(self) -> str:
        return self._macro("i") or "-"

    def _eom(self) -> int:
        rt = self.runtime
        s = rt.settings
        self.eom_started = time.monotonic()
        if self.failure is not None:
            raise RuntimeError(f"an earlier callback failed:\n{self.failure}")
        queue_id = self._queue_id()
        skip = self.client_skip()
        if skip is not None:
            # Not scanned, but a verdict a sender wrote must not pass for ours (LMTP files by it).
            self._neutralise()
            self._log(queue_id, "skipped", None, "accept", None, note=skip)
            return Milter.ACCEPT

        # The one scan seam: clamd scans while this thread scores (docs/milter.md).
        outcome = scan(rt.scanner, self.raw_message(), self.truncated)
        verdict, error = outcome.verdict, outcome.scan_error
        self.timings = f" clamd_ms={outcome.clamd_ms:.1f} score_ms={outcome.score_ms:.1f}"
        if error is not None and s.on_scan_error == "tempfail":
            self.setreply("451", "4.7.1", "Virus scanner unavailable, try again later")
            self._log(queue_id, "tempfail", None, "tempfail", error)
            return Milter.TEMPFAIL
        virus = verdict.virus
        if virus is None:  # (the milter's scanners always answer one; never leave it out)
            virus = VirusResult("unscanned", reason="no virus scanner configured")
            verdict = verdict.with_virus(virus)

        if virus.state == "infected" and s.on_virus == "reject":
            name = (virus.name or "unknown").replace("%", "%%")
            self.setreply("554", "5.7.1", f"Message rejected: virus found ({name})")
            self._log(queue_id, "reject", verdict, "reject", error)
            return Milter.REJECT

        self._neutralise()
        for name, value in verdict_headers(verdict).headers:
            self.addheader(name, milter_value(value))
        action = "accept"
        if virus.state == "infected" and s.on_virus == "hold":
            self.quarantine(f"mailsift: virus {virus.name or 'unknown'}")
            action = "hold"
        self._log(queue_id, verdict.label, verdict, action, error)
        return Milter.CONTINUE

    def _neutralise(self) -> None:
        """Rename incoming X-Spam-*/X-Virus-* headers to NAME-Untrusted, keeping their text."""
        # Most messages carry none: one C-level prefix test per header decides (perf: this runs
        # for every message, skipped ones too).
        if not any(name.lstrip().lower().startswith(_VERDICT_PREFIXES) for name, _ in self.headers):
            return
        seen: dict[bytes, int] = {}
        found: list[tuple[str, int, bytes]] = []
        for name, value in self.headers:
            low = name.lower()
            seen[low] = seen.get(low, 0) + 1
            text = name.decode("ascii", "replace")
            if is_verdict_header(text):
                found.append((text, seen[low], value))
        # Delete from the last occurrence backwards so the indexes stay valid.
        for text, idx, _ in reversed(found):
            self.chgheader(text, idx, None)
        for text, _, value in found:
            self.addheader(untrusted_name(text), value.decode("utf-8", "replace").replace("\r\n", "\n"))

    def _log(self, queue_id: str, label: str, verdict: Verdict | None, action: str,
             error: str | None, note: str | None = None) -> None:
        now = time.monotonic()
        ms = (now - self.eom_started) * 1000.0
        metrics.milter_message(verdict, action, error, ms / 1000.0, skipped=note is not None)
        virus = "-"
        score = "-"
        if verdict is not None:
            score = "-" if verdict.probability is None else f"{verdict.score:.1f}"
            v = verdict.virus
            if v is not None:
                virus = {"clean": "clean", "infected": f"infected({v.name})",
                         "unscanned": f"unscanned({v.reason})"}[v.state]
        elif error:
            virus = "unscanned"
        log.info("queue_id=%s message_id=%s verdict=%s score=%s virus=%s action=%s size=%d%s "
                 "scan_ms=%.1f%s%s%s", queue_id, self.message_id, label, score, virus, action,
                 self.size, " partial" if self.truncated else "", ms, self.timings,
                 f" error={error!r}" if error else "", f" reason={note!r}" if note else "")

    def abort(self) -> int:
        self._reset()
        return Milter.CONTINUE

    def close(self) -> int:
        return Milter.CONTINUE


class ClientAwareMilter(MailsiftMilter):
    """The milter when skip_networks or skip_authenticated is set: it also takes the connect
    event (client address) and MAIL FROM (the {auth_authen} macro, sent at MAIL by Postfix's
    default milter_mail_macros), both without a reply."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.network_skip: str | None = None  # the client is in skip_networks (once per connection)
        self.auth: str | None = None

    @Milter.noreply
    @_guarded
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr and self.runtime.skip_networks:
            client = str(hostaddr[0])
            try:
                ip = ipaddress.ip_address(client.split("%")[0])
            except ValueError:
                ip = None
            if ip is not None and any(ip in net for net in self.runtime.skip_networks):
                self.network_skip = f"client {client} in skip_networks"
        return Milter.CONTINUE

    @Milter.symlist("{auth_authen}")
    @Milter.noreply
    @_guarded
    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.auth = self._macro("{auth_authen}")
        return Milter.CONTINUE

    def client_skip(self) -> str | None:
        if self.network_skip is not None:
            return self.network_skip
        if self.auth and self.runtime.settings.skip_authenticated:
            return "authenticated sender"
        return None


def milter_class(runtime: Runtime) -> type[MailsiftMilter]:
    """The class whose callbacks Postfix is asked for: the lean one unless skip rules need the
    client's address or login."""
    if runtime.skip_networks or runtime.settings.skip_authenticated:
        return ClientAwareMilter
    return MailsiftMilter


def make_factory(runtime: Runtime) -> Callable[[], MailsiftMilter]:
    cls = milter_class(runtime)

    def factory() -> MailsiftMilter:
        return cls(runtime)
    return factory
