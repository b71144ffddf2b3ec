"""Greylisting through a real Postfix: foreign clients presented with XCLIENT (swaks
--xclient), the service's clock moved forward instead of waiting five minutes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.postfix import PostfixInstance
from harness.procs import wait_for
from mailsift.config import Config, PolicySettings
from mailsift.policy.postfix import main_cf_settings
from policy_helpers import PolicyProcess

pytestmark = pytest.mark.integration

SWAKS = shutil.which("swaks") or "/usr/bin/swaks"
FOREIGN = "ADDR=192.0.2.10 NAME=mail.sender.test"
HAVE_IPV6 = Path("/proc/net/if_inet6").exists() and bool(Path("/proc/net/if_inet6").read_text().strip())


def restrictions(policy: PolicyProcess) -> dict[str, str]:
    """The recipient restrictions `mailsift postfix-config` prints, with the test's socket."""
    config = Config(policy=PolicySettings(socket=policy.listen))
    value = main_cf_settings(config)["smtpd_recipient_restrictions"]
    # the test instance's mynetworks is loopback, where swaks connects from: XCLIENT
    # replaces the client address before any restriction is evaluated
    return {"smtpd_recipient_restrictions": value,
            "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
            # accept IPv6 client addresses in XCLIENT (the listener stays on 127.0.0.1)
            "inet_protocols": "all" if HAVE_IPV6 else "ipv4"}


def swaks(pf: PostfixInstance, xclient: str, subject: str, sender: str = "bob@sender.test",
          rcpt: str = "alice@example.test") -> tuple[str, str]:
    """Send one message; returns (the RCPT reply code and text, the whole transcript)."""
    r = subprocess.run([SWAKS, "--server", pf.host, "--port", str(pf.smtp_port),
                        "--helo", "mail.sender.test", "--from", sender, "--to", rcpt,
                        "--xclient", xclient, "--header", f"Subject: {subject}",
                        "--body", "greylisting test\n", "--timeout", "60"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    m = re.search(r"-> RCPT TO:<[^>]*>\n(?:<\*\*|<-) +(\d{3} .*)", out)
    assert m, out
    return m.group(1), out


def delivered_with_subject(pf: PostfixInstance, subject: str) -> bytes:
    """Wait for the message with this subject in the Maildir; exactly one copy."""
    def matching() -> list[bytes]:
        return [m for m in pf.delivered() if f"Subject: {subject}\r\n".encode() in m
                or f"Subject: {subject}\n".encode() in m]
    wait_for(matching, 30, what=f"delivery of {subject!r}")
    found = matching()
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def postfix_factory(workdir: Path) -> Iterator[Callable[..., PostfixInstance]]:
    started: list[PostfixInstance] = []

    def start(name: str, policy: PolicyProcess) -> PostfixInstance:
        pf = PostfixInstance(workdir / name, main=restrictions(policy))
        started.append(pf)
        return pf.start()

    yield start
    for pf in started:
        pf.stop()


def greylist_dialog(policy_first: PolicyProcess, mx_first: PostfixInstance,
                    policy_retry: PolicyProcess, mx_retry: PostfixInstance) -> None:
    code, out = swaks(mx_first, FOREIGN, "first")
    assert code.startswith("450 4.7.1 ") and "Greylisted, retry in 300 seconds" in code, out
    policy_first.advance(120)
    code, out = swaks(mx_retry, FOREIGN, "early retry")
    assert code.startswith("450 4.7.1 ") and re.search(r"retry in 1[78]\d seconds", code), out
    policy_first.advance(200)
    code, out = swaks(mx_retry, FOREIGN, "after delay")
    assert code.startswith("250 "), out
    msg = delivered_with_subject(mx_retry, "after delay")
    header = re.search(rb"^X-Greylist: delayed (\d+) seconds by mailsift-\d+\.\d+\r?$", msg, re.M)
    assert header and 320 <= int(header.group(1)) < 330, msg[:800]
    assert not any(b"Subject: first" in m or b"Subject: early retry" in m for m in mx_retry.delivered())
    # the same client, sender and recipient later: no delay, no second header
    code, out = swaks(mx_first, FOREIGN, "known")
    assert code.startswith("250 "), out
    known = delivered_with_subject(mx_first, "known")
    assert b"X-Greylist" not in known


def authenticated_is_never_delayed(policy: PolicyProcess, mx: PostfixInstance) -> None:
    code, out = swaks(mx, FOREIGN + " LOGIN=carol", "authenticated",
                      sender="carol@sender.test", rcpt="dave@example.test")
    assert code.startswith("250 "), out
    msg = delivered_with_subject(mx, "authenticated")
    assert b"X-Greylist" not in msg
    # Postfix passed the XCLIENT LOGIN as sasl_username and our exemption let it through
    # (SASL is not enabled in the test Postfix, so permit_sasl_authenticated did not)
    assert re.search(r"reason=sasl client=mail\.sender\.test\[192\.0\.2\.10\] sender=<carol@sender\.test>",
                     policy.log()), policy.log()


def test_greylisting_through_postfix_with_sqlite(start_policy: Callable[..., PolicyProcess],
                                                 postfix_factory: Callable[..., PostfixInstance]) -> None:
    policy = start_policy()
    mx = postfix_factory("mx", policy)
    greylist_dialog(policy, mx, policy, mx)
    authenticated_is_never_delayed(policy, mx)
    assert "reason=new client=mail.sender.test[192.0.2.10]" in policy.log()
    if not HAVE_IPV6:
        return
    # IPv6: the retry may come from another host of the same /64
    code, out = swaks(mx, "ADDR=IPV6:2001:db8:5:6::10 NAME=v6.sender.test", "v6 first", sender="v6@sender.test")
    assert code.startswith("450 4.7.1 "), out
    policy.advance(301)
    code, out = swaks(mx, "ADDR=IPV6:2001:db8:5:6::abcd NAME=v6b.sender.test", "v6 retry", sender="v6@sender.test")
    assert code.startswith("250 "), out
    assert b"X-Greylist: delayed 301 seconds" in delivered_with_subject(mx, "v6 retry")
    code, out = swaks(mx, "ADDR=IPV6:2001:db8:5:7::10 NAME=v6c.sender.test", "v6 other net", sender="v6@sender.test")
    assert code.startswith("450 4.7.1 "), out


def test_two_mx_hosts_share_one_redis(start_policy: Callable[..., PolicyProcess],
                                      postfix_factory: Callable[..., PostfixInstance],
                                      redis_server) -> None:  # type: ignore[no-untyped-def]
    a = start_policy("policy-a", db=redis_server.url)
    b = start_policy("policy-b", db=redis_server.url)
    mx1 = postfix_factory("mx1", a)
    mx2 = postfix_factory("mx2", b)
    greylist_dialog(a, mx1, b, mx2)
    # the first attempt went through mx1 and policy A; the retries through mx2 and policy B
    assert "reason=new" in a.log() and "reason=new" not in b.log()
    assert "reason=early" in b.log() and "reason=passed" in b.log()
    authenticated_is_never_delayed(b, mx2)


def test_postfix_tempfails_when_the_service_is_down(start_policy: Callable[..., PolicyProcess],
                                                    postfix_factory: Callable[..., PostfixInstance]) -> None:
    policy = start_policy()
    mx = postfix_factory("mx", policy)
    mx.postconf({"smtpd_policy_service_default_action": "451 4.3.5 Policy service unavailable, try again later",
                 "smtpd_policy_service_try_limit": "1"})
    mx.reload()
    policy.stop()
    code, out = swaks(mx, FOREIGN, "service down")
    assert code.startswith("451 4.3.5"), out
