"""A share-on milter installs each published model version in a child process that keeps off the
milter's CPU: `mailsift milter --cpus N` with `[classifier] share` against a real redis-server,
versions published there; every installer child seen runs on the other CPUs and 10 nice steps
below the milter, and the milter stays on its CPU and scores with the installed model."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from corpus_files import learned_model_dir
from harness.procs import Daemon, child_pids, unix_ready, wait_for
from harness.redis import RedisServer
from milter_wire import MtaSide, message_commands, packet, parse_replies

pytestmark = [pytest.mark.integration]

N_TRAIN = 60


def cpu_list(text: str) -> frozenset[int]:
    """'0-2,5' -> {0, 1, 2, 5} (as /proc/PID/status writes Cpus_allowed_list)."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


def affinity_and_nice(pid: int) -> tuple[frozenset[int], int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    cpus = next(line.split()[1] for line in status.splitlines() if line.startswith("Cpus_allowed_list:"))
    return cpu_list(cpus), int(stat.rsplit(")", 1)[1].split()[16])


def installers(milter_pid: int) -> dict[int, tuple[frozenset[int], int]]:
    """pid -> CPUs and nice of the milter's installer children running now."""
    seen = {}
    for pid in child_pids(milter_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"mailsift.share.snapshot" in cmdline:
            got = affinity_and_nice(pid)
            if got is not None:
                seen[pid] = got
    return seen


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, corpora: Path) -> Path:
    return learned_model_dir(tmp_path_factory.mktemp("share-install") / "models", corpora, N_TRAIN)


def test_the_installer_child_keeps_off_the_milters_cpu(tmp_path: Path, template: Path, redis_server: RedisServer,
                                                       mailsift_bin: str) -> None:
    import shutil

    from mailsift.share.channel import Channel
    from mailsift.share.snapshot import read_state, snapshot

    allowed = frozenset(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs two CPUs: one for the milter, one for the installer")
    mine = max(allowed)
    data, meta, _ = snapshot(template)
    model = tmp_path / "models"
    shutil.copytree(template, model)
    sock = tmp_path / "milter.sock"
    (tmp_path / "mailsift.toml").write_text(f'[classifier]\ndbpath = "{model}"\nshare = "{redis_server.url}"\n'
                                            f'[milter]\nsocket = "unix:{sock}"\nclamd = ""\n')
    ch = Channel(redis_server.url)
    milter = Daemon([mailsift_bin, "milter", "--config", str(tmp_path / "mailsift.toml"), "--cpus", str(mine),
                     "--log-level", "DEBUG"], tmp_path / "milter.log").start()
    try:
        milter.wait_ready(lambda: unix_ready(sock), 60, what="mailsift milter")
        got = affinity_and_nice(milter.pid)
        assert got is not None and got[0] == frozenset({mine})
        parent_nice = got[1]
        assert ch.hold_lease("test-trainer", 60)
        # The last look at each child: the milter moves it within moments of starting it, before it
        # has read the published bytes (the first look may come before that).
        seen: dict[int, tuple[frozenset[int], int]] = {}
        for version in (1, 2, 3):
            assert ch.publish("test-trainer", version, data, meta, "0-0")
            deadline = time.monotonic() + 60
            while read_state(model).version != version:
                assert time.monotonic() < deadline, f"version {version} not installed:\n{milter.log()[-2000:]}"
                seen.update(installers(milter.pid))
                time.sleep(0.005)
        assert seen, "no installer child was seen while three versions were installed"
        assert {cpus for cpus, _nice in seen.values()} == {allowed - {mine}}
        assert {nice for _cpus, nice in seen.values()} == {min(19, parent_nice + 10)}
        assert json.loads((model / "share" / "state.json").read_text())["version"] == 3
        assert affinity_and_nice(milter.pid)[0] == frozenset({mine})  # type: ignore[index]

        # The milter reloads the installed model and scores with it.
        wait_for(lambda: "load #2" in milter.log(), 10, what="the milter reloading the installed model")
        mta = MtaSide(sock)
        try:
            mta.send(message_commands([("From", "a@outside.test"), ("Subject", "hello")], b"hello\r\n", "SI1",
                                      mta.negotiate()))
            added, _changed, final = parse_replies(mta.replies())
            mta.send(packet(b"Q"))
        finally:
            mta.close()
        assert final == b"c" and dict(added)["X-Spam-Status"].startswith(("No", "Yes"))
    finally:
        ch.close()
        milter.stop()
