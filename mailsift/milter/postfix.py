"""The postconf lines that wire the milter into Postfix (`mailsift postfix-config`)."""

from __future__ import annotations

from mailsift.config import Config
from mailsift.daemon import parse_listen

POSTFIX_CHROOT = "/var/spool/postfix"


def postfix_milter_address(socket: str, chroot: str = POSTFIX_CHROOT) -> str:
    """How Postfix names our socket: smtpd runs chrooted in the queue directory, so a unix
    socket inside it is named relative to it (unix:/mailsift/milter.sock)."""
    where = parse_listen(socket, allow_off=False)
    assert where is not None
    if where.kind == "unix":
        path = where.path
        root = chroot.rstrip("/")
        if path.startswith(root + "/"):
            path = path[len(root):]
        return f"unix:{path}"
    return f"inet:[{where.host}]:{where.port}" if ":" in where.host else f"inet:{where.host}:{where.port}"


def postconf_lines(config: Config) -> list[str]:
    s = config.milter
    addr = postfix_milter_address(s.socket)
    lines = [
        f"# milter: {s.socket} (Postfix's smtpd is chrooted in {POSTFIX_CHROOT}; the socket's group "
        f"must be {s.socket_group or 'one postfix is in'})",
        "# (if you run other milters, add this one to their list instead)",
        f"postconf -e 'smtpd_milters = {addr}'",
        f"postconf -e 'non_smtpd_milters = {addr}'",
        "postconf -e 'milter_protocol = 6'",
        "# a milter that is down or fails makes Postfix answer 451, never accept unscanned mail",
        "postconf -e 'milter_default_action = tempfail'",
        "# Postfix's defaults, stated: {auth_authen} at MAIL FROM (skip_authenticated), the queue id at end of message",
        "postconf -e 'milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr} {mail_host} {mail_mailer}'",
        "postconf -e 'milter_end_of_data_macros = i'",
        f"postconf -e 'milter_content_timeout = {max(300, int(s.clamd_timeout) + 60)}s'",
    ]
    if not addr.startswith("unix:"):
        lines.insert(1, "# an inet socket adds ~40 ms per message here; prefer a unix socket")
    return lines
