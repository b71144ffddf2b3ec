"""The postconf lines that make Postfix deliver to `mailsift serve` over LMTP and refuse unknown
recipients during the SMTP dialog (virtual mailbox domains and maps answered by our socketmap)."""

from __future__ import annotations

from mailsift.config import Config
from mailsift.store.settings import parse_listen

SPOOL = "/var/spool/postfix/"


def _postfix_endpoint(value: str) -> str | None:
    where = parse_listen(value)
    if where is None:
        return None
    if where[0] == "unix":
        path = str(where[1])
        # Postfix's lmtp(8) and smtpd(8) run chrooted in the spool on Debian: name it relative.
        if path.startswith(SPOOL):
            path = path[len(SPOOL):]
        return f"unix:{path}"
    host, port = where
    host = f"[{host}]" if ":" in str(host) else host
    return f"inet:{host}:{port}"


def postconf_lines(config: Config) -> list[str]:
    s = config.store
    lines: list[str] = []
    lmtp = _postfix_endpoint(s.lmtp)
    if lmtp is None:
        lines.append("# [store] lmtp is off: no LMTP delivery to mailsift")
    else:
        lines.append("# deliver mail for the virtual mailbox domains to mailsift over LMTP")
        lines.append(f"virtual_transport = lmtp:{lmtp}")
        lines.append("lmtp_destination_recipient_limit = 50")
    lookup = parse_listen(s.lookup)
    if lookup is None:
        lines.append("# [store] lookup is off: set virtual_mailbox_domains / virtual_mailbox_maps yourself")
    else:
        if lookup[0] == "unix":
            target = f"socketmap:unix:{lookup[1]}"
        else:
            target = f"socketmap:inet:{lookup[0]}:{lookup[1]}"
        lines.append("# which domains and users mailsift serves; unknown users get 550 5.1.1 at RCPT TO")
        lines.append(f"virtual_mailbox_domains = proxy:{target}:domain")
        lines.append(f"virtual_mailbox_maps = proxy:{target}:mailbox")
        lines.append("proxy_read_maps = $local_recipient_maps $mydestination $virtual_alias_maps "
                     "$virtual_alias_domains $virtual_mailbox_maps $virtual_mailbox_domains "
                     "$relay_recipient_maps $relay_domains $canonical_maps $sender_canonical_maps "
                     "$recipient_canonical_maps $relocated_maps $transport_maps $mynetworks")
        lines.append("smtpd_reject_unlisted_recipient = yes")
        lines.append("unknown_virtual_mailbox_reject_code = 550")
    if s.recipient_delimiter:
        lines.append(f"recipient_delimiter = {s.recipient_delimiter}")
    return lines
