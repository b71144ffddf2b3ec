"""`mailsift policy` as a daemon: the protocol over unix sockets and TCP, bad input, faults."""

from __future__ import annotations

import grp
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import free_port, wait_for
from policy_helpers import PolicyProcess, encode, request

DEFER = "DEFER_IF_PERMIT 4.7.1 Greylisted, retry in 300 seconds"


def test_many_requests_per_connection_over_unix_socket(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    with p.client() as c:
        assert c.ask() == DEFER
        assert c.ask().startswith("DEFER_IF_PERMIT 4.7.1 Greylisted, retry in ")
        assert c.ask(sasl_username="alice") == "DUNNO"
        p.advance(301)
        assert c.ask().startswith("PREPEND X-Greylist: delayed 30")
        assert c.ask() == "DUNNO"
    st = os.stat(p.socket_path)
    assert oct(st.st_mode & 0o777) == "0o660"  # Postfix's group may connect, nobody else
    assert st.st_gid == grp.getgrnam("postfix").gr_gid


def test_tcp_listener(start_policy: Callable[..., PolicyProcess]) -> None:
    port = free_port()
    p = start_policy(listen=f"inet:{port}@127.0.0.1")
    with p.client() as c:
        assert c.ask() == DEFER
        assert c.ask(recipient="b@example.test") == DEFER


def test_one_header_per_message_with_several_recipients(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    with p.client() as c:
        for r in ("a@example.test", "b@example.test"):
            assert c.ask(recipient=r, instance="m1") == DEFER
        p.advance(400)
        assert c.ask(recipient="a@example.test", instance="m2").startswith("PREPEND X-Greylist:")
        assert c.ask(recipient="b@example.test", instance="m2") == "DUNNO"


def test_twenty_concurrent_clients(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    errors: list[BaseException] = []
    answers: dict[int, list[str]] = {}

    def client(n: int) -> None:
        try:
            with p.client() as c:
                answers[n] = [c.ask(client_address=f"198.51.{n}.1", recipient=f"r{i}@example.test")
                              for i in range(30)]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(answers) == 20 and all(a == [DEFER] * 30 for a in answers.values())


BAD_INPUTS = {
    "binary junk": os.urandom(4096).replace(b"=", b"") + b"\n\n",
    "one megabyte line": b"request=smtpd_access_policy\nsender=" + b"x" * (1 << 20) + b"\n\n",
    "line without equals": b"request=smtpd_access_policy\nhello world\n\n",
    "NUL in a value": b"request=smtpd_access_policy\nsender=a\0b\n\n",
    "no request attribute": b"sender=a@b.test\n\n",
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_malformed_request_closes_without_reply(start_policy: Callable[..., PolicyProcess], name: str) -> None:
    p = start_policy()
    bystander = p.client()  # connected before the abuse, used after it
    assert bystander.ask() == DEFER
    with p.client() as c:
        try:
            c.send_raw(BAD_INPUTS[name])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before we finish sending a megabyte
        try:
            assert c.closed_by_server()
        except ConnectionResetError:
            pass
    assert "malformed request" in wait_for(lambda: "malformed request" in p.log() and p.log(), 10,
                                           what="the malformed request to be logged")
    assert bystander.ask(recipient="other@example.test") == DEFER
    bystander.close()
    assert p.daemon.alive()


def test_unknown_attributes_are_served(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    with p.client() as c:
        c.send_raw(encode(request(some_future_attribute="1", another="x=y")))
        assert c.read_reply() == DEFER


def test_truncated_and_dropped_requests(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    bystander = p.client()
    whole = encode(request())
    for cut in (1, 20, len(whole) // 2, len(whole) - 1):
        s = socket.socket(socket.AF_UNIX)
        s.connect(str(p.socket_path))
        s.sendall(whole[:cut])
        s.close()
    # a connection reset with unread data
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(p.socket_path))
    s.sendall(whole + whole[:10])
    s.close()
    wait_for(lambda: "closed in the middle of a request" in p.log(), 10, what="the dropped request logged")
    assert bystander.ask(recipient="still@example.test") == DEFER
    bystander.close()
    assert p.daemon.alive()


def test_sigterm_stops_cleanly_and_removes_the_socket(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy()
    idle = p.client()
    assert idle.ask() == DEFER
    os.killpg(p.daemon.pid, signal.SIGTERM)
    assert p.daemon.proc.wait(10) == 0
    assert not p.socket_path.exists()
    idle.close()


def test_stale_socket_is_replaced_live_one_is_not(start_policy: Callable[..., PolicyProcess],
                                                 mailsift_bin: str, workdir: Path) -> None:
    p = start_policy()
    p.daemon.kill9()
    assert p.socket_path.exists()  # left behind by the killed server
    p2 = start_policy()  # same name, same socket path
    with p2.client() as c:
        assert c.ask() == DEFER
    p3 = PolicyProcess(mailsift_bin, workdir, "policy", f"sqlite:{workdir}/x.sqlite")
    p3.daemon.start()
    assert p3.daemon.proc.wait(20) == 1
    assert "another server is listening" in p3.log()
    with p2.client() as c:
        assert c.ask(recipient="z@example.test") == DEFER


def test_unreachable_redis_answers_dunno_and_warns(start_policy: Callable[..., PolicyProcess]) -> None:
    p = start_policy(db=f"redis://127.0.0.1:{free_port()}/0")
    with p.client() as c:
        assert c.ask() == "DUNNO"
        assert c.ask() == "DUNNO"
    assert "greylist store failed, letting mail through (DUNNO)" in p.log()


def test_redis_gone_then_back(start_policy: Callable[..., PolicyProcess], redis_server, workdir: Path) -> None:  # type: ignore[no-untyped-def]
    from harness.redis import RedisServer
    p = start_policy(db=redis_server.url)
    with p.client() as c:
        assert c.ask() == DEFER
        p.advance(301)
        assert c.ask().startswith("PREPEND X-Greylist: delayed 301 seconds")
        redis_server.stop()
        assert c.ask(recipient="new@example.test") == "DUNNO"  # mail flows while the store is gone
        assert "greylist store failed" in p.log()
        again = RedisServer(workdir / "redis2", port=redis_server.port).start()
        try:
            # the service tries the store again (at most every 5 s) and greylists again;
            # the new Redis is empty, so the old triplet is new again
            wait_for(lambda: c.ask(recipient="later@example.test") != "DUNNO", 20,
                     what="greylisting to resume")
            assert c.ask(recipient="later2@example.test") == DEFER
        finally:
            again.stop()
    assert "greylist store is back" in p.log()


def test_bad_configuration_is_a_clear_error(mailsift_bin: str, workdir: Path) -> None:
    import subprocess
    cfg = workdir / "bad.toml"
    cfg.write_text('[policy]\ndelay = -5\n')
    r = subprocess.run([mailsift_bin, "policy", "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "delay" in r.stderr
    r = subprocess.run([mailsift_bin, "policy", "--db", "mysql://x", "--socket", f"unix:{workdir}/s"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "sqlite:PATH" in r.stderr
