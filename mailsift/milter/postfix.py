"""The postconf lines that wire the milter into Postfix (`mailsift postfix-config`)."""

from __future__ import annotations

from mailsift.config import Config

POSTFIX_CHROOT = "/var/spool/postfix"


def postfix_milter_address(socket: str, chroot: str = POSTFIX_CHROOT) -> str:
    """How Postfix names our socket: smtpd runs chrooted in the queue directory, so a unix
    socket inside it is named relative to it (unix:/mailsift/milter.sock)."""
    if socket.startswith("unix:") or socket.startswith("/"):
        path = socket[5:] if socket.startswith("unix:") else socket
        root = chroot.rstrip("/")
        if path.startswith(root + "/"):
            path = path[len(root):]
        return f"unix:{path}"
    if socket.startswith("inet:"):
        port, _, host = socket[5:].partition("@")
        return f"inet:{host or '127.0.0.1'}:{port}"
    return socket


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
    if s.socket.startswith("inet:"):
        lines.insert(1, "# an inet socket adds ~40 ms per message here; prefer a unix socket")
    return lines
