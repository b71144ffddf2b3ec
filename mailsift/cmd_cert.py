"""`mailsift cert HOSTNAME [--out DIR]`: a self-signed certificate for a quick start.

Writes DIR/HOSTNAME.crt (0644) and DIR/HOSTNAME.key (0600) and prints the `[store]` lines
that point `mailsift serve` at them. Existing files are kept unless --force is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailsift.config import Config

HELP = "make a self-signed TLS certificate and key for the POP3/IMAP listeners"

DEFAULT_DIR = "/etc/mailsift/tls"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("hostname", help="the name clients connect to (becomes CN and subjectAltName)")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_DIR,
                        help=f"directory for HOSTNAME.crt and HOSTNAME.key (default: {DEFAULT_DIR})")
    parser.add_argument("--days", type=int, default=825, help="validity in days (default: 825)")
    parser.add_argument("--force", action="store_true", help="replace existing files")


def run(args: argparse.Namespace, config: Config) -> int:
    from mailsift.tls import make_self_signed

    host = args.hostname.strip().rstrip(".")
    if not host or "/" in host or "\\" in host or "\0" in host or host.startswith("."):
        print(f"mailsift cert: not a usable host name: {args.hostname!r}", file=sys.stderr)
        return 2
    if args.days < 1:
        print("mailsift cert: --days must be at least 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    cert_path = out / f"{host}.crt"
    key_path = out / f"{host}.key"
    existing = [str(p) for p in (cert_path, key_path) if p.exists()]
    if existing and not args.force:
        print(f"mailsift cert: {', '.join(existing)} exist; use --force to replace", file=sys.stderr)
        return 1
    try:
        make_self_signed(host, cert_path, key_path, days=args.days)
    except (OSError, ValueError) as exc:
        print(f"mailsift cert: {exc}", file=sys.stderr)
        return 1
    print(f"# wrote {cert_path} and {key_path} (self-signed for {host}); in the config file:")
    print("[store]")
    print(f'tls_cert = "{cert_path.resolve()}"')
    print(f'tls_key = "{key_path.resolve()}"')
    return 0
