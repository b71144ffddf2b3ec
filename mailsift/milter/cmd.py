"""`mailsift milter`: the libmilter daemon Postfix calls through smtpd_milters."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
from pathlib import Path

from mailsift import daemon
from mailsift.config import Config, override
from mailsift.ops import metrics

HELP = "run the milter (ClamAV + spam model, adds X-Spam-*/X-Virus-* headers) in the foreground"

log = logging.getLogger("mailsift.milter")

MILTER_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}
# Imported before dropping root, in case the installation is not readable by [milter] user.
PRELOAD = ("mailsift.milter.pool", *daemon.MAIL_MODULES)
# ... and, when this process scores (score_workers = 0), what loading the model imports.
PRELOAD_MODEL = ("mailsift.classifier.api", "mailsift.classifier.tokenize", "joblib", "sklearn.naive_bayes",
                 "scipy.sparse")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="SPEC",
                        help="unix:PATH, HOST:PORT or [V6]:PORT (default: [milter] socket)")
    parser.add_argument("--clamd", metavar="ADDR", help="unix:PATH or HOST:PORT of clamd (default: [milter] clamd)")
    parser.add_argument("--dbpath", metavar="DIR", help="model directory (default: [classifier] dbpath)")
    parser.add_argument("--on-virus", choices=("tag", "reject", "hold"), help="default: [milter] on_virus")
    parser.add_argument("--on-scan-error", choices=("tempfail", "accept"), help="default: [milter] on_scan_error")
    parser.add_argument("--score-workers", type=int, metavar="N",
                        help="scoring processes besides the milter's own (default: [milter] score_workers)")
    parser.add_argument("--cpus", metavar="SPEC",
                        help="auto (one CPU), all, or CPU numbers such as 1 or 2,3 (default: [milter] cpus)")


def run(args: argparse.Namespace, config: Config) -> int:
    import Milter
    import milter

    from mailsift.milter.affinity import apply_cpus, spare_cpus
    from mailsift.milter.app import Runtime, make_factory
    from mailsift.milter.libmilter import worker_pool_linked
    from mailsift.milter.reload import ModelHolder
    from mailsift.milter.scan import MessageScanner
    from mailsift.scanner.clamav import ClamdClient
    from mailsift.share.agent import PRELOAD as SHARE_PRELOAD
    from mailsift.share.agent import start_agent

    settings = override(config.milter, socket=args.socket, clamd=args.clamd, on_virus=args.on_virus,
                        on_scan_error=args.on_scan_error, score_workers=args.score_workers, cpus=args.cpus)
    try:
        settings.validate()
        clamd = (ClamdClient(settings.clamd, timeout=settings.clamd_timeout, pass_fd=settings.clamd_pass_fd)
                 if settings.clamd else None)
    except ValueError as exc:
        log.error("invalid setting: %s", exc)
        return 3
    dbpath = args.dbpath or config.classifier.dbpath
    required = config.classifier.required
    # [classifier] max_bytes and unsure_points apply to the milter's verdicts as to `classify`'s.
    classifier = config.classifier

    # Before any thread starts: they inherit the CPUs (and the signal mask below).
    allowed = frozenset(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else frozenset()
    try:
        cpus = apply_cpus(settings.cpus, settings.score_workers)
    except (ValueError, OSError) as exc:
        log.error("cpus: %s", exc)
        return 3
    if cpus is not None:
        log.info("running on CPU %s (cpus=%s)", ",".join(map(str, sorted(cpus))), settings.cpus)

    # libmilter waits for SIGTERM/SIGHUP/SIGINT in its own signal thread (sigwait). Block them
    # here, before any thread starts, so every thread inherits the mask and none of them is
    # killed by the signal's default action before smfi_main can return and clean up.
    signal.pthread_sigmask(signal.SIG_BLOCK, MILTER_SIGNALS)

    if worker_pool_linked():
        log.warning("pymilter runs on a libmilter with a worker pool (Debian's shared libmilter): "
                    "about a third more CPU per message; `make venv` links one without it "
                    "(deploy/build-libmilter.sh)")

    milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.SETSYMLIST)
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    milter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_exception_policy(Milter.TEMPFAIL)

    models = ModelHolder(dbpath, interval=settings.reload_interval)  # loads nothing before start()
    # Up before the milter socket (ready means watched), and before root is dropped: its imports
    # and port are root's to take.
    metrics.start_or_exit(config.metrics, "milter", dbpath, lambda: models.current()[0])

    listen = daemon.parse_listen(settings.socket, allow_off=False)
    assert listen is not None
    path = Path(listen.path) if listen.kind == "unix" else None
    try:
        if path is not None:
            daemon.prepare_unix(path, settings.socket_group)
    except OSError as exc:
        log.error("cannot open milter socket %s: %s", settings.socket, exc)
        return 3
    milter.setconn(listen.milter_spec())
    milter.register("mailsift", data=lambda ctx: ctx.getpriv().data(),
                    unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
                    negotiate=Milter.negotiate_callback)
    old_umask = os.umask(0o777 & ~daemon.parse_mode(settings.socket_mode))
    try:
        milter.opensocket(True)
    except milter.error as exc:
        log.error("cannot open milter socket %s: %s", settings.socket, exc)
        return 3
    finally:
        os.umask(old_umask)
    if path is not None:
        daemon.secure_socket(path, daemon.parse_mode(settings.socket_mode), settings.socket_group)
    try:
        route_sock = _bind_classify_socket(config)
    except OSError as exc:
        log.error("cannot open the classify socket %s: %s", config.classifier.socket, exc)
        return 3
    # Root only opened the socket: the model (a pickle) is loaded, and the scoring processes
    # started, as [milter] user.
    preload = PRELOAD + (SHARE_PRELOAD if config.classifier.share else ())
    try:
        daemon.drop_privileges(settings.user, preload=preload,
                               heavy=PRELOAD_MODEL if settings.score_workers == 0 else ())
    except (daemon.DaemonError, OSError) as exc:
        log.error("user: %s", exc)
        if path is not None:
            path.unlink(missing_ok=True)
        _close_classify_socket(route_sock)
        return 3

    # [classifier] share: newer published models are installed into dbpath (the watcher reloads them)
    # by a child process, on the CPUs this process keeps off: an install costs its CPU no more
    # than the reload (bench/share_cost.py).
    share = start_agent(config.classifier, dbpath, trainer=False, install_cpus=spare_cpus(allowed, cpus))

    route = None
    pool = None
    if settings.score_workers > 0:
        # The workers load and watch the model; this process never imports the classifier.
        from mailsift.milter.pool import PooledScanner
        pool = PooledScanner(MessageScanner(clamd, models, required=required, max_bytes=classifier.max_bytes,
                                            unsure_points=classifier.unsure_points), dbpath,
                             settings.score_workers, settings.reload_interval)
        scanner = pool
    else:
        models.start()
        scanner = MessageScanner(clamd, models, required=required, max_bytes=classifier.max_bytes,
                                 unsure_points=classifier.unsure_points)
        model, reason = models.current()
        if model is None:
            log.warning("no usable model in %s (%s): mail is tagged X-Spam-Status: Unknown", dbpath, reason)
    if route_sock is not None:
        from mailsift.classifier.routeserver import RouteServer, model_scorer
        if pool is not None:
            models.start()  # the workers hold theirs; the classify socket scores here
        route = RouteServer(route_sock, model_scorer(models), max_bytes=config.classifier.max_bytes).start()
        log.info("classify socket on %s", config.classifier.socket)
    runtime = Runtime(settings=settings, scanner=scanner, skip_networks=daemon.parse_networks(settings.skip_networks))
    Milter.factory = make_factory(runtime)

    log.info("mailsift milter listening on %s (clamd %s, model dir %s, on_virus=%s, on_scan_error=%s)",
             settings.socket, settings.clamd or "none", dbpath, settings.on_virus, settings.on_scan_error)
    try:
        milter.main()
    finally:
        if route is not None:
            route.stop()  # closes the socket and removes its file
        else:
            _close_classify_socket(route_sock)
        models.stop()
        if share is not None:
            share.stop(timeout=5)
        if pool is not None:
            pool.close()
        if path is not None:
            try:
                path.unlink()
            except OSError:
                pass
    log.info("mailsift milter stopped")
    return 0


def _bind_classify_socket(config: Config) -> "socket.socket | None":
    """The `[classifier] socket` for `mailsift classify` (docs/classifier.md), bound as root
    like the milter's own, with its mode and group; None when it is not configured."""
    from mailsift.classifier.route import socket_path

    where = socket_path(config.classifier.socket)
    if where is None:
        return None
    c = config.classifier
    return daemon.bind(daemon.Listen("unix", path=where), c.socket_mode, c.socket_group or None)


def _close_classify_socket(sock: "socket.socket | None") -> None:
    if sock is not None:
        from mailsift.classifier.routeserver import close_unix
        close_unix(sock)
