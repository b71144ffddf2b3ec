"""`mailsift milter`: the libmilter daemon Postfix calls through smtpd_milters."""

from __future__ import annotations

import argparse
import grp
import logging
import os
import signal
from pathlib import Path

from mailsift.config import Config, override
from mailsift.ops import metrics

HELP = "run the milter (ClamAV + spam model, adds X-Spam-*/X-Virus-* headers) in the foreground"

log = logging.getLogger("mailsift.milter")

MILTER_SIGNALS = {signal.SIGTERM, signal.SIGHUP, signal.SIGINT}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", metavar="SPEC",
                        help="unix:PATH or inet:PORT@HOST (default: [milter] socket)")
    parser.add_argument("--clamd", metavar="ADDR", help="unix:PATH or HOST:PORT of clamd (default: [milter] clamd)")
    parser.add_argument("--dbpath", metavar="DIR", help="model directory (default: [classifier] dbpath)")
    parser.add_argument("--on-virus", choices=("tag", "reject", "hold"), help="default: [milter] on_virus")
    parser.add_argument("--on-scan-error", choices=("tempfail", "accept"), help="default: [milter] on_scan_error")
    parser.add_argument("--score-workers", type=int, metavar="N",
                        help="scoring processes besides the milter's own (default: [milter] score_workers)")
    parser.add_argument("--cpus", metavar="SPEC",
                        help="auto (one CPU), all, or CPU numbers such as 1 or 2,3 (default: [milter] cpus)")


def unix_path(spec: str) -> Path | None:
    for prefix in ("unix:", "local:"):
        if spec.startswith(prefix):
            return Path(spec[len(prefix):])
    if spec.startswith("/"):
        return Path(spec)
    return None


def prepare_socket_dir(path: Path, group: str | None) -> None:
    if path.parent.exists():
        return
    path.parent.mkdir(parents=True, mode=0o750)
    if group:
        try:
            os.chown(path.parent, -1, grp.getgrnam(group).gr_gid)
        except (KeyError, PermissionError) as exc:
            log.warning("cannot give %s to group %s: %s", path.parent, group, exc)


def secure_socket(path: Path, mode: int, group: str | None) -> None:
    if group:
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except KeyError:
            log.warning("socket group %s does not exist; leaving the socket's group as is", group)
        except PermissionError as exc:
            log.warning("cannot give %s to group %s: %s", path, group, exc)
    os.chmod(path, mode)


def run(args: argparse.Namespace, config: Config) -> int:
    import Milter
    import milter

    from mailsift.milter.affinity import apply_cpus
    from mailsift.milter.app import Runtime, make_factory, parse_networks
    from mailsift.milter.libmilter import worker_pool_linked
    from mailsift.milter.reload import ModelHolder
    from mailsift.milter.scan import MessageScanner
    from mailsift.scanner.clamav import ClamdClient

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

    # Before any thread starts: they inherit the CPUs (and the signal mask below).
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

    models = ModelHolder(dbpath, interval=settings.reload_interval)
    metrics.start_or_exit(config.metrics, "milter", dbpath, lambda: models.current()[0])
    pool = None
    if settings.score_workers > 0:
        # The workers load and watch the model; this process never imports the classifier.
        from mailsift.milter.pool import PooledScanner
        pool = PooledScanner(MessageScanner(clamd, models, required=required), dbpath,
                             settings.score_workers, settings.reload_interval)
        scanner = pool
    else:
        models.start()
        scanner = MessageScanner(clamd, models, required=required)
        model, reason = models.current()
        if model is None:
            log.warning("no usable model in %s (%s): mail is tagged X-Spam-Status: Unknown", dbpath, reason)
    runtime = Runtime(settings=settings, scanner=scanner, skip_networks=parse_networks(settings.skip_networks))

    Milter.factory = make_factory(runtime)
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

    path = unix_path(settings.socket)
    if path is not None:
        prepare_socket_dir(path, settings.socket_group)
    milter.setconn(settings.socket)
    milter.register("mailsift", data=lambda ctx: ctx.getpriv().data(),
                    unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
                    negotiate=Milter.negotiate_callback)
    try:
        milter.opensocket(True)
    except milter.error as exc:
        log.error("cannot open milter socket %s: %s", settings.socket, exc)
        models.stop()
        if pool is not None:
            pool.close()
        return 3
    if path is not None:
        secure_socket(path, int(settings.socket_mode, 8), settings.socket_group)
    log.info("mailsift milter listening on %s (clamd %s, model dir %s, on_virus=%s, on_scan_error=%s)",
             settings.socket, settings.clamd or "none", dbpath, settings.on_virus, settings.on_scan_error)
    try:
        milter.main()
    finally:
        models.stop()
        if pool is not None:
            pool.close()
        if path is not None:
            try:
                path.unlink()
            except OSError:
                pass
    log.info("mailsift milter stopped")
    return 0
