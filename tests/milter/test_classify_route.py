"""The classify socket: `mailsift classify` asks a running `mailsift milter` for verdicts
(mailsift/classifier/route.py, routeserver.py), and scores in-process when it does not answer."""

from __future__ import annotations

import grp
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import wait_for
from milter_helpers import MilterProcess, corpus_files

HELD_OUT = 20  # of each class, after the ones trained_dbpath learned


def classify(mailsift_bin: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([mailsift_bin, "classify", *args], input=stdin, capture_output=True, timeout=120)


@pytest.fixture
def held_out(corpora: Path) -> list[Path]:
    ham = corpus_files(corpora, "spamassassin/easy_ham")[300:300 + HELD_OUT]
    spam = corpus_files(corpora, "spamassassin/spam")[300:300 + HELD_OUT]
    return [m for pair in zip(ham, spam) for m in pair]


@pytest.fixture
def route_milter(milter_factory: Callable[..., MilterProcess], workdir: Path,
                 trained_dbpath: Path) -> tuple[MilterProcess, Path]:
    sock = workdir / "run" / "classify.sock"
    cfg = workdir / "milter.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\nsocket = "{sock}"\n[milter]\nclamd = ""\n')
    milter = milter_factory("--config", str(cfg))
    wait_for(lambda: "classify socket on" in milter.log(), 30, what="classify socket")
    return milter, sock


def test_socket_and_in_process_give_identical_verdicts(mailsift_bin: str, workdir: Path, trained_dbpath: Path,
                                                       route_milter: tuple[MilterProcess, Path],
                                                       held_out: list[Path]) -> None:
    milter, sock = route_milter
    # The socket client's own dbpath holds no model: only the daemon can have scored.
    client = workdir / "client.toml"
    client.write_text(f'[classifier]\ndbpath = "{workdir}/no-model-here"\nsocket = "{sock}"\n')
    alone = workdir / "alone.toml"
    alone.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\n')
    files = [str(p) for p in held_out]

    via = classify(mailsift_bin, "--config", str(client), *files)
    local = classify(mailsift_bin, "--config", str(alone), *files)
    assert via.returncode == local.returncode == 0, (via.stderr, local.stderr)
    assert via.stdout == local.stdout
    labels = {line.split("\t")[1] for line in via.stdout.decode().splitlines()}
    assert len(via.stdout.decode().splitlines()) == len(files) and {"spam", "ham"} <= labels
    # -p: the same message, the same headers, byte for byte; one message per process on stdin
    for path in held_out[:6]:
        raw = path.read_bytes()
        a = classify(mailsift_bin, "--config", str(client), "-p", stdin=raw)
        b = classify(mailsift_bin, "--config", str(alone), "-p", stdin=raw)
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout)
        assert b"X-Spam-Status: " in a.stdout
    # another required (a flag) and unsure band (the client's config) travel with the request
    client.write_text(client.read_text() + "unsure_points = 3.0\n")
    alone.write_text(alone.read_text() + "unsure_points = 3.0\n")
    a = classify(mailsift_bin, "--config", str(client), "--required", "9", *files)
    b = classify(mailsift_bin, "--config", str(alone), "--required", "9", *files)
    assert (a.returncode, a.stdout) == (b.returncode, b.stdout)
    assert a.stdout != via.stdout


def test_socket_client_imports_no_model(mailsift_bin: str, workdir: Path,
                                       route_milter: tuple[MilterProcess, Path], held_out: list[Path]) -> None:
    """The client's path imports neither numpy nor the classifier nor the config module."""
    _, sock = route_milter
    client = workdir / "client.toml"
    client.write_text(f'[classifier]\nsocket = "{sock}"\n[milter]\nclamd = ""\n')
    for flags in ([], ["-p"]):
        p = subprocess.run([mailsift_bin, "classify", *flags, "--config", str(client)],
                           input=held_out[0].read_bytes(), capture_output=True, timeout=60,
                           env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
        assert p.returncode == 1
        assert b"X-Spam-Status: No" in p.stdout if flags else p.stdout.decode().startswith("-\tham\t")
        imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.decode().splitlines() if "|" in line}
        assert "mailsift.classifier.route" in imported
        assert not imported & {"numpy", "sklearn", "joblib", "mailsift.config", "mailsift.classifier.model",
                               "mailsift.milter.scan", "logging", "mailsift.verdict", "dataclasses"}, flags


def test_no_daemon_means_in_process(mailsift_bin: str, workdir: Path, trained_dbpath: Path,
                                    held_out: list[Path]) -> None:
    cfg = workdir / "c.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\nsocket = "{workdir}/nobody/classify.sock"\n')
    raw = held_out[1].read_bytes()  # spam
    p = classify(mailsift_bin, "--config", str(cfg), stdin=raw)
    assert p.returncode == 0 and p.stdout.decode().startswith("-\tspam\t"), p.stderr
    p = classify(mailsift_bin, "--config", str(cfg), "-p", stdin=raw)
    assert p.returncode == 0 and b"X-Spam-Flag: YES" in p.stdout and raw.split(b"\n\n", 1)[1] in p.stdout


def test_socket_mode_group_and_removal(route_milter: tuple[MilterProcess, Path]) -> None:
    milter, sock = route_milter
    st = sock.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
    if os.geteuid() == 0:
        assert st.st_gid == grp.getgrnam("mail").gr_gid
    milter.stop()
    assert not sock.exists()


def _exchange(sock: Path, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(sock))
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_bad_requests_are_refused(route_milter: tuple[MilterProcess, Path]) -> None:
    _, sock = route_milter
    assert _exchange(sock, b"HELLO\n").startswith(b"MAILSIFT/1 ERR ")
    assert b"max_bytes + 1" in _exchange(sock, b"CLASSIFY MAILSIFT/1 5000 5.0 1.0 1024\n")
    assert b"too long" in _exchange(sock, b"x" * 4096)  # no line end in sight
    assert _exchange(sock, b"CLASSIFY MAILSIFT/1 3 nan 1.0 1024\nabc").startswith(b"MAILSIFT/1 ERR ")
    # no client makes the daemon hold more than its own max_bytes per connection
    assert b"max_bytes above" in _exchange(sock, b"CLASSIFY MAILSIFT/1 3 5.0 1.0 10000000\nabc")
    ok = _exchange(sock, b"CLASSIFY MAILSIFT/1 5 5.0 1.0 1024\nhello")
    assert ok.startswith(b"MAILSIFT/1 OK ") and b"\nlabel\t" in ok


def test_client_cap_and_deadline(trained_dbpath: Path, workdir: Path) -> None:
    """Idle clients hold at most max_clients slots, each at most `deadline` seconds; one more
    is told BUSY at once; afterwards the socket serves again."""
    from mailsift.classifier.route import RouteError, classify as ask
    from mailsift.classifier.routeserver import RouteServer, model_scorer
    from mailsift.daemon import Listen, bind
    from mailsift.milter.reload import ModelHolder

    path = workdir / "unit" / "classify.sock"
    holder = ModelHolder(trained_dbpath).start()
    server = RouteServer(bind(Listen("unix", path=str(path)), "0600", None), model_scorer(holder),
                         max_clients=2, deadline=1.0).start()
    idle = []
    try:
        raw = b"Subject: hello\r\n\r\nhello world\r\n"
        assert ask(str(path), raw, 5.0, 1.0, 262144).probability is not None
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(path))
            s.sendall(b"CLASSIFY MAILSIFT/1 100 5.0 1.0 1024\n")  # and never the message
            idle.append(s)
        wait_for(lambda: server._slots._value == 0, 5, what="both idle clients in their slots")
        t0 = time.monotonic()
        with pytest.raises(RouteError, match="BUSY"):
            ask(str(path), raw, 5.0, 1.0, 262144)
        assert time.monotonic() - t0 < 0.5
        for s in idle:  # dropped at the deadline
            s.settimeout(5)
            assert s.recv(100) == b""
        wait_for(lambda: server._slots._value == 2, 5, what="slots released")
        assert ask(str(path), raw, 5.0, 1.0, 262144).label in ("ham", "spam", "unsure")
        assert server.refused == 1
    finally:
        for s in idle:
            s.close()
        server.stop()
        holder.stop()
    assert not path.exists()


def test_daemon_without_model_means_in_process(mailsift_bin: str, milter_factory: Callable[..., MilterProcess],
                                               workdir: Path, trained_dbpath: Path, held_out: list[Path]) -> None:
    """A daemon with no model answers "no model": classify then scores with its own."""
    sock = workdir / "run" / "classify.sock"
    cfg = workdir / "milter.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{workdir}/empty"\nsocket = "{sock}"\n[milter]\nclamd = ""\n')
    milter = milter_factory("--config", str(cfg))
    wait_for(lambda: "classify socket on" in milter.log(), 30, what="classify socket")
    client = workdir / "client.toml"
    client.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\nsocket = "{sock}"\n')
    alone = workdir / "alone.toml"
    alone.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\n')
    files = [str(p) for p in held_out[:4]]
    a = classify(mailsift_bin, "--config", str(client), *files)
    b = classify(mailsift_bin, "--config", str(alone), *files)
    assert (a.returncode, a.stdout) == (b.returncode, b.stdout) and a.returncode == 0
    assert len(a.stdout.splitlines()) == 4


@pytest.mark.parametrize("line,fragment", [('socket = "relative/classify.sock"', "expected an absolute path"),
                                           ('socket_mode = "999"', "not an octal mode")])
def test_bad_socket_settings_are_refused(mailsift_bin: str, workdir: Path, line: str, fragment: str) -> None:
    cfg = workdir / "bad.toml"
    cfg.write_text(f"[classifier]\n{line}\n")
    p = classify(mailsift_bin, "--config", str(cfg), stdin=b"Subject: x\n\nx\n")
    assert p.returncode == 3 and fragment in p.stderr.decode() and "[classifier]" in p.stderr.decode()
