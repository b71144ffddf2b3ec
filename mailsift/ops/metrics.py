"""Prometheus metrics of `mailsift milter`, `mailsift serve` and `mailsift policy`.

The daemons call the hook functions below (`milter_message`, `session`, `login`,
`lmtp_replies`, `learn_event`, `greylist`) where things happen. Until `start()` has run in
a process, every hook returns at once (a global read: the default, metrics off, costs the
hot paths nothing and never imports prometheus_client, which takes ~70 ms to import).

`start(settings, daemon, ...)`, called once by a daemon's run(), builds that daemon's
metrics in a registry of their own and serves them in the Prometheus text format on
`[metrics] <daemon>` (HOST:PORT, loopback unless `allow_remote`), from a thread of
prometheus_client's HTTP server. docs/operations.md lists every metric.

IMAP worker processes (mailsift/serve/workers.py) count nothing themselves: `forward_to()`
makes their `session` and `login` hooks send the event over the worker's link, and the main
process counts it (`remote()`), so one scrape of the main process sees every process's
counts, and a worker that dies loses none. (prometheus_client's multiprocess mode was the
other way: it picks its value class when it is imported, from an environment variable, keeps
a file per process that must outlive it, and cannot report process metrics.)
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from mailsift.ops.settings import MetricsSettings
    from mailsift.verdict import Verdict

log = logging.getLogger("mailsift.metrics")

# SpamAssassin-style points (mailsift.classifier.model.probability_to_score: -10 .. 20,
# required 5 by default): finer around the threshold.
SCORE_BUCKETS = (-5.0, -2.5, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.5, 10.0, 15.0, 20.0)
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
MILTER_ACTIONS = ("accept", "hold", "reject", "tempfail")
VERDICT_LABELS = ("spam", "ham", "unsure", "unknown")
VIRUS_STATES = ("clean", "infected", "unscanned")
# mailsift.classifier.persist.SIDECAR_FILE, named here: importing persist imports numpy and the
# model, which a milter with score_workers keeps out of its process (tests/foundation/test_metrics_off.py).
SIDECAR_FILE = "model.json"


# -- the hooks (cheap no-ops until start()) ----------------------------------------------------

_milter: "_MilterMetrics | None" = None
_store: "_StoreMetrics | None" = None
_policy: "_PolicyMetrics | None" = None
_forward: Callable[[tuple[Any, ...]], None] | None = None


def milter_message(verdict: "Verdict | None", action: str, error: str | None, seconds: float,
                   skipped: bool = False) -> None:
    """One message at the milter's end-of-message: its verdict (None when it was skipped or
    tempfailed unscored), the action, clamd's error if any, and the seconds it took."""
    m = _milter
    if m is not None:
        m.message(verdict, action, error, seconds, skipped)


def milter_failure() -> None:
    """An unexpected exception at end-of-message (the message got a 451)."""
    m = _milter
    if m is not None:
        m.failures.inc()
        m.messages_by_action["tempfail"].inc()


def session(protocol: str) -> None:
    """A store connection was accepted (lmtp, pop3, pop3s, imap, imaps, lookup)."""
    if _forward is not None:
        _forward(("session", protocol))
        return
    m = _store
    if m is not None:
        m.sessions.labels(protocol).inc()


def login(protocol: str, ok: bool) -> None:
    """A login (IMAP LOGIN/AUTHENTICATE, POP3 USER+PASS/AUTH) succeeded or failed."""
    if _forward is not None:
        _forward(("login", protocol, ok))
        return
    m = _store
    if m is not None:
        m.logins.labels(protocol, "ok" if ok else "failed").inc()


def lmtp_replies(replies: Iterable[str]) -> None:
    """The per-recipient replies to one LMTP DATA (each a delivery: 250, 451, 452, 552...)."""
    m = _store
    if m is not None:
        for reply in replies:
            m.deliveries.labels(reply[:3]).inc()


def learn_event(source: str, label: str, outcome: str) -> None:
    """One judgement the feedback learner handled: source is the rule that fired ("move into
    Junk"...), outcome learned | moved | skipped | not-learned."""
    m = _store
    if m is not None:
        m.learn.labels(source, label, outcome).inc()


def greylist(reason: str, action: str) -> None:
    """One policy answer: the greylister's reason (new, early, passed, known, ...) and the
    action sent to Postfix (its first word: defer_if_permit, prepend, dunno)."""
    m = _policy
    if m is not None:
        m.decisions.labels(reason, action.split(None, 1)[0].lower() if action else "none").inc()


def forward_to(send: Callable[[tuple[Any, ...]], None] | None) -> None:
    """In an IMAP worker: send session/login events to the main process instead of counting."""
    global _forward
    _forward = send


def remote(event: tuple[Any, ...]) -> None:
    """In the main process: count an event an IMAP worker forwarded."""
    if not isinstance(event, tuple) or not event:
        return
    if event[0] == "session" and len(event) == 2:
        session(str(event[1]))
    elif event[0] == "login" and len(event) == 3:
        login(str(event[1]), bool(event[2]))


# -- the metrics of each daemon ----------------------------------------------------------------

class _MilterMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        self.messages = Counter("mailsift_milter_messages", "Messages at end-of-message, by the action taken",
                                ["action"], registry=registry)
        self.messages_by_action = {a: self.messages.labels(a) for a in MILTER_ACTIONS}
        self.skipped = Counter("mailsift_milter_skipped", "Messages not scanned (skip_networks, "
                               "skip_authenticated)", registry=registry)
        verdicts = Counter("mailsift_milter_verdicts", "Messages scanned, by verdict label",
                           ["label"], registry=registry)
        self.verdicts = {v: verdicts.labels(v) for v in VERDICT_LABELS}
        virus = Counter("mailsift_milter_virus_results", "clamd's results on scanned messages",
                        ["status"], registry=registry)
        self.virus = {v: virus.labels(v) for v in VIRUS_STATES}
        self.score = Histogram("mailsift_milter_score", "Spam score (X-Spam-Score) of scored messages",
                               buckets=SCORE_BUCKETS, registry=registry)
        self.clamd_errors = Counter("mailsift_milter_clamd_errors", "Messages clamd gave no answer for",
                                    registry=registry)
        self.failures = Counter("mailsift_milter_failures", "Unexpected errors at end-of-message (451)",
                                registry=registry)
        self.seconds = Histogram("mailsift_milter_scan_seconds", "Seconds from end-of-message to the "
                                 "reply (clamd and the model, in parallel)", buckets=SECONDS_BUCKETS,
                                 registry=registry)

    def message(self, verdict: "Verdict | None", action: str, error: str | None, seconds: float,
                skipped: bool) -> None:
        child = self.messages_by_action.get(action)
        (child or self.messages.labels(action)).inc()
        if skipped:
            self.skipped.inc()
            return
        if error:
            self.clamd_errors.inc()
        self.seconds.observe(seconds)
        if verdict is None:
            return
        self.verdicts[verdict.label].inc()
        if verdict.probability is not None:
            self.score.observe(verdict.score)
        if verdict.virus is not None:
            self.virus[verdict.virus.state].inc()


class _StoreMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        self.sessions = Counter("mailsift_sessions", "Connections accepted, by protocol",
                                ["protocol"], registry=registry)
        self.logins = Counter("mailsift_logins", "Logins, by protocol and result (ok, failed)",
                              ["protocol", "result"], registry=registry)
        self.deliveries = Counter("mailsift_lmtp_deliveries", "LMTP deliveries (one per recipient of "
                                  "a DATA), by reply code", ["code"], registry=registry)
        self.learn = Counter("mailsift_learn_events", "Users' judgements the feedback learner handled, "
                             "by source (the rule), label and outcome", ["source", "label", "outcome"],
                             registry=registry)


class _PolicyMetrics:
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter

        self.decisions = Counter("mailsift_greylist_decisions", "Policy answers, by the greylister's "
                                 "reason and the action sent to Postfix", ["reason", "action"],
                                 registry=registry)


# -- collectors read at each scrape ------------------------------------------------------------

class ModelCollector:
    """The model in `dbpath` (its sidecar, model.json), and the one the milter scores with."""

    def __init__(self, dbpath: str | Path, loaded: Callable[[], Any] | None = None) -> None:
        self.dbpath = Path(dbpath)
        self.loaded = loaded

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        meta: dict[str, Any] = {}
        try:
            raw = json.loads((self.dbpath / SIDECAR_FILE).read_text())
            if isinstance(raw, dict):
                meta = raw
        except (OSError, ValueError):
            pass
        yield GaugeMetricFamily("mailsift_model_present", "1 when the model directory holds a model "
                                "(its sidecar is readable)", value=1 if meta else 0)
        if meta:
            if isinstance(meta.get("generation"), int):
                yield GaugeMetricFamily("mailsift_model_generation", "Version of the model on disk "
                                        "(its generation: each save adds one)", value=meta["generation"])
            saved = meta.get("saved_at")
            if isinstance(saved, (int, float)):
                yield GaugeMetricFamily("mailsift_model_saved_timestamp_seconds",
                                        "When the model on disk was saved (Unix time)", value=saved)
                yield GaugeMetricFamily("mailsift_model_age_seconds", "Seconds since the model on "
                                        "disk was saved", value=max(0.0, time.time() - saved))
            counts = GaugeMetricFamily("mailsift_model_messages", "Messages the model has learned",
                                       labels=["label"])
            for label in ("ham", "spam"):
                n = meta.get(f"n_{label}")
                if isinstance(n, int):
                    counts.add_metric([label], n)
            yield counts
        if self.loaded is not None:
            model = self.loaded()
            generation = getattr(model, "generation", None)
            if isinstance(generation, int):
                yield GaugeMetricFamily("mailsift_model_loaded_generation", "Version (generation) of "
                                        "the model this process scores with", value=generation)

    def describe(self) -> list[Any]:
        return []  # families vary with the model directory: collected unchecked


class ChildrenCollector:
    """Resident memory of this process's children (IMAP workers, the milter's score workers)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        family = GaugeMetricFamily("mailsift_child_resident_memory_bytes", "Resident memory of each "
                                   "child process (IMAP workers, score workers)", labels=["pid", "name"])
        page = os.sysconf("SC_PAGE_SIZE")
        for pid in child_pids():
            try:
                rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
                name = Path(f"/proc/{pid}/comm").read_text().strip()
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            family.add_metric([str(pid), name], rss)
        yield family

    def describe(self) -> list[Any]:
        return []


def child_pids() -> list[int]:
    """This process's children (every thread's: /proc/self/task/*/children)."""
    pids: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return pids
    for tid in tasks:
        try:
            pids += [int(p) for p in Path(f"/proc/self/task/{tid}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return sorted(set(pids))


# -- starting ----------------------------------------------------------------------------------

class Exposition:
    """The running /metrics server of one daemon."""

    def __init__(self, registry: Any, server: Any, thread: Any, host: str, port: int) -> None:
        self.registry, self._server, self._thread = registry, server, thread
        self.host, self.port = host, port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def build_registry(daemon: str, dbpath: str | Path | None = None,
                   loaded_model: Callable[[], Any] | None = None) -> Any:
    """A registry with `daemon`'s metrics (and makes its hooks count into them)."""
    global _milter, _store, _policy
    from prometheus_client import CollectorRegistry, Gauge, ProcessCollector

    from mailsift import __version__

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)  # process_resident_memory_bytes, CPU, open files
    registry.register(ChildrenCollector())
    Gauge("mailsift_build_info", "The running mailsift", ["version", "daemon"],
          registry=registry).labels(__version__, daemon).set(1)
    if daemon == "milter":
        _milter = _MilterMetrics(registry)
    elif daemon == "store":
        _store = _StoreMetrics(registry)
    elif daemon == "policy":
        _policy = _PolicyMetrics(registry)
    else:
        raise ValueError(f"unknown daemon {daemon!r}")
    if dbpath is not None:
        registry.register(ModelCollector(dbpath, loaded_model))
    return registry


def start(settings: "MetricsSettings", daemon: str, dbpath: str | Path | None = None,
          loaded_model: Callable[[], Any] | None = None) -> Exposition | None:
    """Serve `daemon`'s metrics where `[metrics] <daemon>` says; None when it is off.
    Raises ValueError (a bad or non-loopback address) or OSError (cannot listen)."""
    settings.validate()
    where = settings.address(daemon)
    if where is None:
        return None
    from prometheus_client import start_http_server

    registry = build_registry(daemon, dbpath, loaded_model)
    host, port = where
    server, thread = start_http_server(port, addr=host, registry=registry)
    expo = Exposition(registry, server, thread, host, server.server_address[1])
    log.info("metrics on %s", expo.url)
    return expo


def start_or_exit(settings: "MetricsSettings", daemon: str, dbpath: str | Path | None = None,
                  loaded_model: Callable[[], Any] | None = None) -> Exposition | None:
    """start(), logging why it failed; SystemExit(3) then (the daemon must not run unwatched
    when metrics were asked for)."""
    try:
        return start(settings, daemon, dbpath, loaded_model)
    except ValueError as exc:
        log.error("[metrics] %s", exc)
    except OSError as exc:
        log.error("[metrics] %s = %r: cannot listen: %s", daemon, getattr(settings, daemon),
                  exc.strerror or exc)
    raise SystemExit(3)


def reset() -> None:
    """Make every hook a no-op again (tests that enable metrics in their own process)."""
    global _milter, _store, _policy, _forward
    _milter = _store = _policy = None
    _forward = None
