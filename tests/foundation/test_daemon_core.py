"""The one daemon core (mailsift/daemon.py): one listen grammar for every daemon, and each real
daemon started as root binding what it must and then running as its configured user."""

from __future__ import annotations

import grp
import os
import random
import re
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from harness.procs import Daemon, free_port, tcp_ready, unix_ready, wait_for
from harness.sysuser import system_user
from mailsift.daemon import Listen, parse_listen

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


# -- one listen grammar ----------------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("unix:/run/x.sock", Listen("unix", path="/run/x.sock")),
    ("127.0.0.1:25", Listen("inet", host="127.0.0.1", port=25)),
    (":2525", Listen("inet", host="127.0.0.1", port=2525)),
    ("[::1]:143", Listen("inet", host="::1", port=143)),
    ("mx.example.org:24", Listen("inet", host="mx.example.org", port=24)),
    ("inet:10025@127.0.0.1", Listen("inet", host="127.0.0.1", port=10025)),  # Postfix's notation
    ("inet:127.0.0.1:10025", Listen("inet", host="127.0.0.1", port=10025)),
    ("inet6:10025@::1", Listen("inet", host="::1", port=10025)),
    ("off", None),
])
def test_one_listen_grammar(value: str, expected: Listen | None) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["/tmp/x", "unix:relative", "tcp:25", "127.0.0.1:99999", "::1:25", "[::1]",
                                   "127.0.0.1:", "example.org"])
def test_listen_grammar_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


def test_every_daemon_reads_the_same_grammar() -> None:
    """The same value means the same address in [store], [policy] and [milter]; "off" only where a
    listener may be off."""
    from mailsift.config import ConfigError, parse_config
    from mailsift.policy.server import parse_listen as policy_listen
    from mailsift.store.settings import parse_listen as store_listen

    for value in ("unix:/run/m.sock", "[::1]:2000", "127.0.0.1:2001"):
        where = parse_listen(value)
        assert where is not None
        assert policy_listen(value) == where
        assert store_listen(value) == (("unix", where.path) if where.kind == "unix" else (where.host, where.port))
        parse_config({"milter": {"socket": value}, "policy": {"socket": value}, "store": {"imap": value}})
    for section in ("milter", "policy"):
        with pytest.raises(ConfigError):
            parse_config({section: {"socket": "off"}})
    cfg = parse_config({})
    assert cfg.store.socket_mode == cfg.policy.socket_mode == cfg.milter.socket_mode == "0660"
    assert cfg.store.socket_group == cfg.policy.socket_group == cfg.milter.socket_group == "postfix"


@pytest.mark.parametrize("value, postfix", [
    ("unix:/var/spool/postfix/private/x", None),
    ("inet:8891@127.0.0.1", "inet:127.0.0.1:8891"),
    ("127.0.0.1:8891", "inet:127.0.0.1:8891"),
    ("[::1]:8891", "inet:[::1]:8891"),
])
def test_postfix_names_every_listener_the_same_way(value: str, postfix: str | None) -> None:
    """main.cf gets Postfix's name for any value of the grammar, for the milter and the policy."""
    from mailsift.milter.postfix import postfix_milter_address
    from mailsift.policy.postfix import policy_service_endpoint

    if postfix is None:
        assert postfix_milter_address(value) == "unix:/private/x"
        assert policy_service_endpoint(value) == "unix:private/x"
    else:
        assert postfix_milter_address(value) == policy_service_endpoint(value) == postfix


def test_no_import_cycles() -> None:
    """No daemon module imports its way back to itself (greylist -> settings -> server ->
    greylist and serve/server.py <-> serve/workers.py were two), counting imports inside
    functions too."""
    import ast

    edges: dict[str, set[str]] = {}
    for path in (REPO / "mailsift").rglob("*.py"):
        mod = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        deps = edges.setdefault(mod, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mailsift"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("mailsift"))

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [d for d in edges.get(start, ()) if d != start]
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo += edges.get(m, ())
        return False

    for mod in ("mailsift.policy.greylist", "mailsift.policy.settings", "mailsift.policy.server",
                "mailsift.policy.cmd", "mailsift.milter.cmd", "mailsift.milter.settings", "mailsift.store.settings",
                "mailsift.daemon", "mailsift.config", "mailsift.serve.server", "mailsift.serve.workers",
                "mailsift.serve.workers_main", "mailsift.serve.cmd"):
        assert not reaches(mod, mod), f"{mod} imports its way back to itself"


def test_one_privilege_drop_and_one_network_parser() -> None:
    """Only the daemon core changes user ids or parses network lists; the daemons call it."""
    import ast

    setters = {"setuid", "setgid", "setresuid", "setresgid", "setgroups", "initgroups", "seteuid", "setegid"}
    where: dict[str, list[str]] = {"set": [], "parse_networks": []}
    for path in (REPO / "mailsift").rglob("*.py"):
        rel = str(path.relative_to(REPO))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in setters:
                where["set"].append(rel)
            if isinstance(node, ast.FunctionDef) and node.name == "parse_networks":
                where["parse_networks"].append(rel)
    assert set(where["set"]) == {"mailsift/daemon.py"}, where["set"]
    assert where["parse_networks"] == ["mailsift/daemon.py"]


# -- real daemons, started as root, running as their user -----------------------------------------

@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="mailsift-core-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _ids(pid: int) -> tuple[set[int], set[int], str]:
    status = Path(f"/proc/{pid}/status").read_text()
    uids = set(map(int, re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()))
    gids = set(map(int, re.search(r"^Gid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)", status, re.M).groups()))
    groups = re.search(r"^Groups:\s*(.*)$", status, re.M).group(1).strip()
    return uids, gids, groups


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _runs_as(daemon: Daemon, uid: int, gid: int) -> None:
    wait_for(lambda: _ids(daemon.pid)[0] == {uid}, 20, what="the daemon to drop root")
    uids, gids, groups = _ids(daemon.pid)
    assert uids == {uid} and gids == {gid}, (uids, gids)
    assert "0" not in groups.split()


def _check_socket(path: Path, made_dir: Path) -> None:
    try:
        postfix = grp.getgrnam("postfix").gr_gid
    except KeyError:
        pytest.skip("no postfix group on this machine")
    st = path.stat()
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660 and st.st_gid == postfix
    d = made_dir.stat()
    assert stat.S_IMODE(d.st_mode) == 0o750, oct(d.st_mode)  # not the umask's 0755


def _serve_with_alice(mailsift_bin: str, cfg: Path, workdir: Path, lmtp: Path, port: int) -> Daemon:
    """Add alice@example.test with `mailsift user`, start `mailsift serve` on cfg and wait until
    its LMTP socket and the TCP `port` answer."""
    r = subprocess.run([mailsift_bin, "user", "--config", str(cfg), "add", "alice@example.test", "--stdin"],
                       input="pw-alice\n", text=True, capture_output=True, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    d = Daemon([mailsift_bin, "serve", "--config", str(cfg)], workdir / "serve.log", env=ENV).start()
    try:
        d.wait_ready(lambda: unix_ready(lmtp) and tcp_ready("127.0.0.1", port) and "ready" in d.log(), 30,
                     what="mailsift serve")
    except BaseException:
        d.stop()
        raise
    return d


def _free_privileged_port() -> int:
    ports = list(range(700, 1000))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def _milter_wire():  # type: ignore[no-untyped-def]
    import importlib.util

    spec = importlib.util.spec_from_file_location("milter_wire", REPO / "tests" / "milter" / "milter_wire.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _small_model(d: Path, uid: int, gid: int) -> None:
    from mailsift.classifier.api import new_model, save_model

    model = new_model(hash_bits=10)
    model.learn(b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n", "spam")
    model.learn(b"Subject: minutes\r\n\r\nthe meeting minutes are attached\r\n", "ham")
    save_model(model, d)
    for p in [d, *d.iterdir()]:
        os.lchown(p, uid, gid)


def test_milter_opens_its_socket_as_root_and_loads_the_model_as_its_user(workdir: Path, mailsift_bin: str) -> None:
    """[milter] user: the socket is made by root (0660, Postfix's group, its new directory 0750),
    then the milter becomes the user and only then loads the model, which that user owns (the
    store's learner, running as the same user, writes it)."""
    pw = system_user()
    model = workdir / "model"
    _small_model(model, pw.pw_uid, pw.pw_gid)
    sock = workdir / "spool" / "mailsift" / "milter.sock"
    cfg = workdir / "mailsift.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{model}"\n[milter]\nsocket = "unix:{sock}"\nclamd = ""\n'
                   f'user = "{pw.pw_name}"\n')
    d = Daemon([mailsift_bin, "milter", "--config", str(cfg)], workdir / "milter.log", env=ENV).start()
    try:
        d.wait_ready(lambda: unix_ready(sock) and "loaded" in d.log(), 30, what="mailsift milter")
        _runs_as(d, pw.pw_uid, pw.pw_gid)
        _check_socket(sock, sock.parent)
        assert stat.S_IMODE((workdir / "spool").stat().st_mode) == 0o750
        assert "refusing model" not in d.log()
        assert f"running as {pw.pw_name}" in d.log()
        wire = _milter_wire()
        mta = wire.MtaSide(sock)
        try:
            protocol = mta.negotiate()
            mta.send(wire.message_commands([("From", "a@sender.test"), ("Subject", "cheap pills")],
                                           b"buy cheap pills now\r\n", "CORE1", protocol))
            added, _changed, final = wire.parse_replies(mta.replies())
        finally:
            mta.close()
        status = dict(added).get("X-Spam-Status", "")
        assert final == b"c" and status and not status.startswith("Unknown"), (added, d.log()[-2000:])
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_milter_as_root_refuses_the_users_model(workdir: Path, mailsift_bin: str) -> None:
    pw = system_user()
    model = workdir / "model"
    _small_model(model, pw.pw_uid, pw.pw_gid)
    sock = workdir / "milter.sock"
    cfg = workdir / "mailsift.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{model}"\n[milter]\nsocket = "unix:{sock}"\nclamd = ""\n')
    d = Daemon([mailsift_bin, "milter", "--config", str(cfg)], workdir / "milter.log", env=ENV).start()
    try:
        d.wait_ready(lambda: "refusing model" in d.log(), 30, what="mailsift milter to refuse the model")
        assert f"owned by {pw.pw_name}" in d.log()
        assert _ids(d.pid)[0] == {0}
    finally:
        d.stop()


def test_serve_binds_a_privileged_port_as_root_then_runs_as_run_as(workdir: Path, mailsift_bin: str) -> None:
    pw = system_user()
    port = _free_privileged_port()
    imap_port = _free_privileged_port()
    lmtp = workdir / "private" / "lmtp.sock"
    cfg = workdir / "mailsift.toml"
    cfg.write_text(f'[store]\nmail_root = "{workdir / "mail"}"\nusers = "{workdir / "users.db"}"\n'
                   f'lmtp = "unix:{lmtp}"\nlookup = "off"\npop3 = "127.0.0.1:{port}"\n'
                   f'imap = "127.0.0.1:{imap_port}"\nimap_workers = 1\nrun_as = "{pw.pw_name}"\n')
    d = _serve_with_alice(mailsift_bin, cfg, workdir, lmtp, port)
    try:
        _runs_as(d, pw.pw_uid, pw.pw_gid)
        workers = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == d.pid]
        assert workers, "no IMAP worker process"
        for pid in workers:  # the IMAP worker serving the privileged port runs as run_as too
            wait_for(lambda: _ids(pid)[0] == {pw.pw_uid}, 20, what="the IMAP worker to drop root")
        with socket.create_connection(("127.0.0.1", imap_port), timeout=10) as s:
            f = s.makefile("rwb")
            assert f.readline().startswith(b"* OK")
            f.write(b"a LOGIN alice@example.test pw-alice\r\n")
            f.flush()
            assert f.readline().startswith(b"a OK"), d.log()[-2000:]
        _check_socket(lmtp, lmtp.parent)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            f = s.makefile("rwb")
            assert f.readline().startswith(b"+OK")
            f.write(b"USER alice@example.test\r\n")
            f.flush()
            assert f.readline().startswith(b"+OK")
            f.write(b"PASS pw-alice\r\n")
            f.flush()
            assert f.readline().startswith(b"+OK"), d.log()[-2000:]  # users.db read as run_as
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_policy_runs_as_its_user_with_a_0660_socket(workdir: Path, mailsift_bin: str) -> None:
    pw = system_user()
    sock = workdir / "private" / "policy.sock"
    cfg = workdir / "mailsift.toml"
    cfg.write_text(f'[policy]\nsocket = "unix:{sock}"\ndb = "sqlite:{workdir / "lib" / "greylist.sqlite"}"\n'
                   f'user = "{pw.pw_name}"\n')
    d = Daemon([mailsift_bin, "policy", "--config", str(cfg)], workdir / "policy.log", env=ENV).start()
    try:
        d.wait_ready(lambda: unix_ready(sock), 30, what="mailsift policy")
        _runs_as(d, pw.pw_uid, pw.pw_gid)
        _check_socket(sock, sock.parent)
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock))
            s.sendall(b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n"
                      b"sender=a@sender.test\nrecipient=b@example.test\n\n")
            assert s.recv(4096).startswith(b"action=DEFER_IF_PERMIT")
        assert (workdir / "lib" / "greylist.sqlite").stat().st_uid == pw.pw_uid
    finally:
        assert d.stop() == 0, d.log()[-3000:]


def test_a_live_socket_is_never_replaced(workdir: Path) -> None:
    from mailsift.daemon import bind

    first = bind(Listen("unix", path=str(workdir / "a" / "s.sock")), "0600", None)
    try:
        with pytest.raises(OSError, match="another server"):
            bind(Listen("unix", path=str(workdir / "a" / "s.sock")), "0600", None)
    finally:
        first.close()
    again = bind(Listen("unix", path=str(workdir / "a" / "s.sock")), "0600", None)  # stale now: replaced
    again.close()
    (workdir / "f").write_text("x")
    with pytest.raises(OSError, match="not a socket"):
        bind(Listen("unix", path=str(workdir / "f")), "0600", None)


def test_bind_makes_each_missing_directory_0750_for_the_group_and_never_a_looser_socket(workdir: Path) -> None:
    from mailsift.daemon import bind

    gid = grp.getgrnam("postfix").gr_gid if os.geteuid() == 0 else os.getgid()
    group = "postfix" if os.geteuid() == 0 else grp.getgrgid(gid).gr_name
    old = os.umask(0)  # the loosest umask a daemon may be started with
    try:
        sock = bind(Listen("unix", path=str(workdir / "a" / "b" / "s.sock")), "0660", group)
    finally:
        os.umask(old)
    try:
        for d in (workdir / "a", workdir / "a" / "b"):  # Postfix's user passes through both
            st = d.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o750, gid)
        st = (workdir / "a" / "b" / "s.sock").stat()
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, gid)
    finally:
        sock.close()


def test_learn_on_move_as_run_as_writes_a_model_the_milters_user_loads(workdir: Path, mailsift_bin: str) -> None:
    """The shared-user arrangement end to end: serve (started as root, run_as the mail user)
    learns from a Junk move and saves the model as that user; the milter, as that same user,
    loads it; root refuses it."""
    import imaplib
    import sys

    from mailsift.classifier.persist import ModelError, load_model

    pw = system_user()
    model = workdir / "model"
    model.mkdir()
    os.chown(model, pw.pw_uid, pw.pw_gid)
    lmtp = workdir / "private" / "lmtp.sock"
    imap_port = free_port()
    cfg = workdir / "mailsift.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{model}"\n'
                   f'[store]\nmail_root = "{workdir / "mail"}"\nusers = "{workdir / "users.db"}"\n'
                   f'lmtp = "unix:{lmtp}"\nlookup = "off"\npop3 = "off"\nimap = "127.0.0.1:{imap_port}"\n'
                   f'imap_workers = 0\nrun_as = "{pw.pw_name}"\n[feedback]\nsave_interval = 0.2\n')
    d = _serve_with_alice(mailsift_bin, cfg, workdir, lmtp, imap_port)
    try:
        _runs_as(d, pw.pw_uid, pw.pw_gid)
        with socket.socket(socket.AF_UNIX) as s:  # one message over LMTP
            s.settimeout(10)
            s.connect(str(lmtp))
            f = s.makefile("rwb")
            for line in (None, b"LHLO x", b"MAIL FROM:<a@sender.test>", b"RCPT TO:<alice@example.test>", b"DATA"):
                if line is not None:
                    f.write(line + b"\r\n")
                    f.flush()
                reply = f.readline()
                while reply[3:4] == b"-":
                    reply = f.readline()
                assert reply[:1] in (b"2", b"3"), reply
            f.write(b"Subject: cheap pills\r\n\r\nbuy cheap pills now\r\n.\r\n")
            f.flush()
            assert f.readline().startswith(b"250"), d.log()[-2000:]
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=30)
        imap.login("alice@example.test", "pw-alice")
        imap.select("INBOX")
        typ, _ = imap.uid("MOVE", "1:*", "Junk")
        assert typ == "OK"
        imap.logout()
        wait_for(lambda: (model / "model.bin").exists(), 30, what="the learner to save the model")
        assert (model / "model.bin").stat().st_uid == pw.pw_uid  # written as the mail user
    finally:
        assert d.stop() == 0, d.log()[-3000:]
    code = "import sys; from mailsift.classifier.persist import load_model; print(load_model(sys.argv[1]).n_spam_)"
    r = subprocess.run(["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--",
                        sys.executable, "-c", code, str(model)], capture_output=True, text=True, env=ENV, cwd="/",
                       timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr  # the milter's user loads it
    with pytest.raises(ModelError, match=f"owned by {pw.pw_name}"):
        load_model(model)  # root does not
