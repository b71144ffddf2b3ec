"""The main.cf lines that wire the policy service into Postfix's recipient restrictions."""

from __future__ import annotations

from mailsift.config import Config
from mailsift.daemon import parse_listen

SPOOL = "/var/spool/postfix/"


def policy_service_endpoint(socket: str) -> str:
    """Postfix's name for our listener: `unix:private/NAME` inside the spool (works chrooted
    or not), `unix:/abs/path` elsewhere, `inet:HOST:PORT` for TCP."""
    listen = parse_listen(socket, allow_off=False)
    assert listen is not None
    if listen.kind == "unix":
        path = listen.path
        if path.startswith(SPOOL):
            return "unix:" + path[len(SPOOL):]
        return "unix:" + path
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"inet:{host}:{listen.port}"


def main_cf_settings(config: Config) -> dict[str, str]:
    """The main.cf settings for the policy service (name -> value)."""
    endpoint = policy_service_endpoint(config.policy.socket)
    return {
        "smtpd_recipient_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                                        f"reject_unauth_destination, check_policy_service {endpoint}",
        "smtpd_policy_service_default_action": "451 4.3.5 Policy service unavailable, try again later",
    }


def postconf_lines(config: Config) -> list[str]:
    settings = main_cf_settings(config)
    return [
        "# greylisting: check_policy_service right after reject_unauth_destination, so only mail",
        "# for our own domains is greylisted and authenticated clients are never delayed",
        "# (this replaces an existing smtpd_recipient_restrictions: merge by hand if you have one)",
        f"postconf -e 'smtpd_recipient_restrictions = {settings['smtpd_recipient_restrictions']}'",
        "# if the policy service is unreachable Postfix tempfails (4xx): mail waits, it is never lost",
        f"postconf -e 'smtpd_policy_service_default_action = {settings['smtpd_policy_service_default_action']}'",
    ]
