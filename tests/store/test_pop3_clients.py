"""Real POP3 clients from Debian's packages against `mailsift serve`: fetchmail (STLS and
implicit TLS, keep and delete, `--uidl` "only new") and getmail6 (implicit TLS, keep with
`read_all = false` and delete). Each client delivers through its own MDA into a Maildir of the
test's own; the bytes that arrive are compared with the bytes that were delivered.

getmail6 has no STLS for POP3 (only SimplePOP3SSLRetriever, implicit TLS), so its STLS leg is
covered by fetchmail alone."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from test_pop3_support import DATA, PASSWORD, USER, Pop3Server, pop3_server  # noqa: F401 - fixture

pytestmark = pytest.mark.integration

FETCHMAIL = shutil.which("fetchmail")
GETMAIL = shutil.which("getmail")
MDA = DATA / "maildir_mda.py"


def originals() -> list[bytes]:
    return [p.read_bytes() for p in sorted(DATA.glob("*.eml"))]


def extra_messages(n: int, tag: str) -> list[bytes]:
    return [(f"From: sender{i}@example.org\nTo: {USER}\nSubject: {tag} {i}\nMessage-ID: <{tag}.{i}@example.org>\n\n"
             f".{tag} body {i}\n").encode() for i in range(n)]


def canon(data: bytes) -> bytes:
    """Compare messages modulo line ends and a missing final newline."""
    return data.replace(b"\r\n", b"\n").rstrip(b"\n") + b"\n"


def client_maildir(path: Path) -> list[bytes]:
    """What the client delivered, without the one header getmail always adds in front
    (`Return-Path: <unknown>`: POP3 carries no envelope sender)."""
    new = path / "new"
    if not new.is_dir():
        return []
    out = []
    for p in new.iterdir():
        data = canon(p.read_bytes())
        if data.startswith(b"Return-Path: <unknown>\n"):
            data = data[len(b"Return-Path: <unknown>\n"):]
        out.append(data)
    return sorted(out)


def server_count(srv: Pop3Server) -> int:
    return len(srv.inbox_files())


# -- fetchmail -----------------------------------------------------------------------------

def fetchmail(srv: Pop3Server, home: Path, maildir: Path, *, implicit: bool, keep: bool,
              cafile: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert FETCHMAIL, "fetchmail missing (deploy/apt-packages.txt)"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = srv.pop3s_port if implicit else srv.pop3_port
    tls = "ssl" if implicit else ""
    rc = home / "fetchmailrc"
    rc.write_text(
        "set no syslog\nset invisible\n"
        f"poll 127.0.0.1 service {port} protocol POP3 uidl auth password timeout 30\n"
        f'  user "{USER}" there with password "{PASSWORD}" is "alice" here\n'
        f'  {tls} sslproto "TLS1.2+" sslcertck sslcertfile "{cafile or srv.cert}" sslcommonname "mail.example.test"\n'
        f"  {'keep' if keep else 'nokeep fetchall'} no rewrite\n"
        f'  mda "{MDA} {maildir}"\n')
    rc.chmod(0o600)
    env = dict(os.environ, HOME=str(home), FETCHMAILHOME=str(home))
    return subprocess.run([FETCHMAIL, "-f", str(rc), "--idfile", str(home / "ids"), "--nodetach", "-v"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=home)


def fetched_ok(r: subprocess.CompletedProcess[str]) -> None:
    # 0: mail fetched; 1: no new mail
    assert r.returncode in (0, 1), r.stdout + r.stderr


def test_fetchmail_stls_keep_then_only_new_by_uidl(pop3_server: Pop3Server, tmp_path: Path) -> None:
    srv = pop3_server
    first = originals()
    srv.deliver(USER, first)
    srv.start()
    home, box = tmp_path / "fm", tmp_path / "fm-mail"
    r = fetchmail(srv, home, box, implicit=False, keep=True)
    fetched_ok(r)
    out = r.stdout + r.stderr
    assert "POP3> STLS" in out and "upgrade to TLS succeeded" in out, out
    assert "TLSv1.3" in out or "TLSv1.2" in out
    assert client_maildir(box) == sorted(canon(m) for m in first)
    assert server_count(srv) == len(first)  # keep: nothing deleted

    # nothing new: nothing fetched
    r = fetchmail(srv, home, box, implicit=False, keep=True)
    fetched_ok(r)
    assert len(client_maildir(box)) == len(first)

    # new mail arrives while the server restarts (deliver() stops and starts it): only that is fetched
    more = extra_messages(3, "second-run")
    srv.deliver(USER, more)
    r = fetchmail(srv, home, box, implicit=False, keep=True)
    fetched_ok(r)
    assert client_maildir(box) == sorted(canon(m) for m in first + more), r.stdout + r.stderr
    assert server_count(srv) == len(first) + len(more)
    # the UIDLs fetchmail stored are the server's, unchanged across the restart
    ids = (home / "ids").read_text()
    assert ids.count(f"{USER}@127.0.0.1") == len(first) + len(more)


def test_fetchmail_implicit_tls_delete_mode(pop3_server: Pop3Server, tmp_path: Path) -> None:
    srv = pop3_server
    msgs = originals() + extra_messages(5, "delete-mode")
    srv.deliver(USER, msgs)
    srv.start()
    box = tmp_path / "fm-mail"
    r = fetchmail(srv, tmp_path / "fm", box, implicit=True, keep=False)
    fetched_ok(r)
    out = r.stdout + r.stderr
    assert "POP3> STLS" not in out and "SSL/TLS: using protocol TLSv1." in out, out
    assert "POP3> DELE" in out
    assert client_maildir(box) == sorted(canon(m) for m in msgs)
    assert server_count(srv) == 0  # expunged at QUIT
    # the other user's mailbox is untouched and alice's is empty for a second run
    r = fetchmail(srv, tmp_path / "fm", box, implicit=True, keep=False)
    assert r.returncode == 1, r.stdout + r.stderr  # 1 = no mail
    assert len(client_maildir(box)) == len(msgs)


def test_fetchmail_refuses_a_server_it_cannot_verify(pop3_server: Pop3Server, tmp_path: Path) -> None:
    srv = pop3_server
    srv.deliver(USER, originals())
    srv.start()
    other = tmp_path / "other"
    r = subprocess.run([srv.mailsift_bin, "cert", "mail.example.test", "--out", str(other)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    box = tmp_path / "fm-mail"
    r = fetchmail(srv, tmp_path / "fm", box, implicit=False, keep=True, cafile=other / "mail.example.test.crt")
    assert r.returncode not in (0, 1), r.stdout + r.stderr
    assert client_maildir(box) == []
    assert server_count(srv) == len(originals())


# -- getmail6 ------------------------------------------------------------------------------

def getmail(srv: Pop3Server, gdir: Path, maildir: Path, *, delete: bool, read_all: bool = False,
            cafile: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert GETMAIL, "getmail (getmail6) missing (deploy/apt-packages.txt)"
    gdir.mkdir(parents=True, exist_ok=True)
    (gdir / "getmailrc").write_text(
        "[retriever]\n"
        "type = SimplePOP3SSLRetriever\n"
        "server = 127.0.0.1\n"
        f"port = {srv.pop3s_port}\n"
        f"username = {USER}\n"
        f"password = {PASSWORD}\n"
        f"ca_certs = {cafile or srv.cert}\n"
        "ssl_cert_hostname = mail.example.test\n"
        "\n[destination]\n"
        "type = MDA_external\n"
        f"path = {MDA}\n"
        f'arguments = ("{maildir}",)\n'
        "allow_root_commands = true\n"
        "\n[options]\n"
        f"read_all = {str(read_all).lower()}\n"
        f"delete = {str(delete).lower()}\n"
        "delivered_to = false\n"
        "received = false\n"
        "verbose = 2\n")
    return subprocess.run([GETMAIL, "--getmaildir", str(gdir), "--rcfile", "getmailrc"],
                          capture_output=True, text=True, timeout=120)


def test_getmail_implicit_tls_keep_only_new_then_delete(pop3_server: Pop3Server, tmp_path: Path) -> None:
    srv = pop3_server
    first = originals()
    srv.deliver(USER, first)
    srv.start()
    gdir, box = tmp_path / "gm", tmp_path / "gm-mail"
    r = getmail(srv, gdir, box, delete=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert client_maildir(box) == sorted(canon(m) for m in first)
    assert server_count(srv) == len(first)

    more = extra_messages(4, "getmail-new")
    srv.deliver(USER, more)  # restarts the server
    r = getmail(srv, gdir, box, delete=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(more)} messages" in r.stdout and f"{len(first)} skipped" in r.stdout, r.stdout
    assert client_maildir(box) == sorted(canon(m) for m in first + more)

    # delete mode: everything already seen is removed from the server, nothing fetched twice
    r = getmail(srv, gdir, box, delete=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert server_count(srv) == 0
    assert len(client_maildir(box)) == len(first) + len(more)


def test_getmail_wrong_ca_gets_nothing(pop3_server: Pop3Server, tmp_path: Path) -> None:
    srv = pop3_server
    srv.deliver(USER, originals())
    srv.start()
    other = tmp_path / "other"
    assert subprocess.run([srv.mailsift_bin, "cert", "mail.example.test", "--out", str(other)],
                          capture_output=True, timeout=60).returncode == 0
    box = tmp_path / "gm-mail"
    r = getmail(srv, tmp_path / "gm", box, delete=True, cafile=other / "mail.example.test.crt")
    assert r.returncode != 0
    assert "certificate verify failed" in (r.stdout + r.stderr).lower() or "ssl" in (r.stdout + r.stderr).lower()
    assert client_maildir(box) == []
    assert server_count(srv) == len(originals())
