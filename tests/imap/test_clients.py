"""Real clients against `mailsift serve`: Python's imaplib and IMAPClient, isync's mbsync (both
ways: flags, moves, deletions, new mail), offlineimap (Debian's packages)."""

from __future__ import annotations

import imaplib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

USER, PW = "carol@example.test", "carol-pw"


def msg(subject: str, body: str = "hello\r\n") -> bytes:
    return (f"From: Sender <sender@example.test>\r\nTo: {USER}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n\r\n{body}").encode()


@pytest.fixture
def srv(imap_server):
    return imap_server(users={USER: PW})


@pytest.fixture
def workdir():
    d = Path(tempfile.mkdtemp(prefix="imap-client-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def subjects_on_server(srv, folder: str, criteria: str = "ALL") -> list[str]:
    with imaplib.IMAP4(srv.host, srv.imap_port) as m:
        m.login(USER, PW)
        typ, _ = m.select(folder, readonly=True)
        assert typ == "OK"
        _, data = m.search(None, criteria)
        nums = data[0].split()
        if not nums:
            return []
        _, items = m.fetch(b",".join(nums), "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return sorted(part[1].decode().split(":", 1)[1].strip() for part in items if isinstance(part, tuple))


def test_imaplib_round_trip(srv) -> None:
    srv.deliver(USER, msg("first"))
    with imaplib.IMAP4(srv.host, srv.imap_port) as m:
        assert m.login(USER, PW)[0] == "OK"
        assert m.select("INBOX")[1] == [b"1"]
        typ, data = m.fetch("1", "(RFC822)")
        assert typ == "OK" and data[0][1].endswith(b"hello\r\n")
        assert m.append("Sent", "(\\Seen)", imaplib.Time2Internaldate(1_600_000_000), msg("sent one"))[0] == "OK"
        typ, data = m.uid("MOVE", "1", "Junk")
        assert typ == "OK"
        assert m.select("Junk")[1] == [b"1"]
        m.store("1", "+FLAGS", "\\Deleted")
        m.expunge()
        assert m.select("Junk")[1] == [b"0"]
        m.logout()


def test_imapclient(srv) -> None:
    from imapclient import IMAPClient
    for i in range(3):
        srv.deliver(USER, msg(f"ic{i}"))
    with IMAPClient(srv.host, port=srv.imap_port, ssl=False) as c:
        c.login(USER, PW)
        assert b"MOVE" in c.capabilities() and b"UIDPLUS" in c.capabilities()
        folders = {f[2]: f[0] for f in c.list_folders()}
        assert b"\\Junk" in folders["Junk"]
        assert c.find_special_folder(b"\\Trash") == "Trash"
        info = c.select_folder("INBOX")
        assert info[b"EXISTS"] == 3 and b"UIDVALIDITY" in info
        uids = c.search(["SUBJECT", "ic1"])
        assert len(uids) == 1
        data = c.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "FLAGS", "RFC822.SIZE", "INTERNALDATE"])
        env = data[uids[0]][b"ENVELOPE"]
        assert env.subject == b"ic1" and env.from_[0].mailbox == b"sender"
        c.add_flags(uids, [b"$Junk"])
        assert b"$Junk" in c.get_flags(uids)[uids[0]]
        c.move(uids, "Junk")
        assert c.folder_status("Junk", [b"MESSAGES"])[b"MESSAGES"] == 1
        c.create_folder("Archive.2020")
        c.rename_folder("Archive", "Old")
        assert "Old.2020" in [f[2] for f in c.list_folders()]
        c.select_folder("INBOX")
        c.idle()
        srv.deliver(USER, msg("while idle"))
        responses = c.idle_check(timeout=5)
        c.idle_done()
        assert (3, b"EXISTS") in responses


def _mbsync_config(srv, workdir: Path) -> Path:
    local = workdir / "local"
    local.mkdir(exist_ok=True)
    conf = workdir / "mbsyncrc"
    conf.write_text(f"""IMAPAccount acc
Host {srv.host}
Port {srv.imap_port}
User {USER}
Pass {PW}
SSLType None
AuthMechs PLAIN

IMAPStore remote
Account acc

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Remove None
Expunge Both
SyncState *
""")
    return conf


def _mbsync(conf: Path) -> None:
    run = subprocess.run(["mbsync", "-c", str(conf), "-a"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def _local_files(workdir: Path, folder: str) -> list[Path]:
    base = workdir / "local" / folder
    return sorted(p for sub in ("cur", "new") for p in (base / sub).glob("*") if p.is_file())


def _subject(path: Path) -> str:
    for line in path.read_bytes().splitlines():
        if line.lower().startswith(b"subject:"):
            return line.split(b":", 1)[1].strip().decode()
    return ""


def test_mbsync_both_ways(srv, workdir) -> None:
    for s in ("keep", "read me", "delete me", "move me"):
        srv.deliver(USER, msg(s))
    conf = _mbsync_config(srv, workdir)
    _mbsync(conf)
    inbox = {_subject(p): p for p in _local_files(workdir, "INBOX")}
    assert set(inbox) == {"keep", "read me", "delete me", "move me"}
    assert (workdir / "local" / "Junk").is_dir()
    # local changes: \Seen, a deletion, a move to Junk, a new message
    p = inbox["read me"]
    p.rename(p.parent.parent / "cur" / (p.name.split(":2,")[0] + ":2,S"))
    inbox["delete me"].unlink()
    m = inbox["move me"]
    m.rename(workdir / "local" / "Junk" / "cur" / m.name.split(",U=")[0].split(":2,")[0])
    (workdir / "local" / "INBOX" / "new" / "1700000000.local1.host").write_bytes(msg("written locally"))
    _mbsync(conf)
    assert subjects_on_server(srv, "INBOX") == ["keep", "read me", "written locally"]
    assert subjects_on_server(srv, "INBOX", "SEEN") == ["read me"]
    assert subjects_on_server(srv, "Junk") == ["move me"]
    # server-side changes come back: a flag and a deletion
    with imaplib.IMAP4(srv.host, srv.imap_port) as c:
        c.login(USER, PW)
        c.select("INBOX")
        _, data = c.search(None, "SUBJECT", "keep")
        c.store(data[0], "+FLAGS", "\\Flagged")
        _, data = c.search(None, "SUBJECT", '"written locally"')
        c.store(data[0], "+FLAGS", "\\Deleted")
        c.expunge()
    _mbsync(conf)
    inbox = {_subject(p): p for p in _local_files(workdir, "INBOX")}
    assert set(inbox) == {"keep", "read me"}
    assert "F" in inbox["keep"].name.split(":2,")[1]


def test_offlineimap_sync(srv, workdir) -> None:
    for s in ("one", "two"):
        srv.deliver(USER, msg(s))
    conf = workdir / "offlineimaprc"
    conf.write_text(f"""[general]
accounts = test
metadata = {workdir}/meta
ui = quiet

[Account test]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = {workdir}/mail

[Repository remote]
type = IMAP
remotehost = {srv.host}
remoteport = {srv.imap_port}
remoteuser = {USER}
remotepass = {PW}
ssl = no
starttls = no
""")
    env = dict(os.environ, HOME=str(workdir))
    run = subprocess.run(["offlineimap", "-c", str(conf), "-o"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    files = [p for p in (workdir / "mail" / "INBOX").rglob("*") if p.is_file()]
    assert sorted(_subject(p) for p in files) == ["one", "two"]
    # a local flag change goes back to the server
    f = files[0]
    flagged_subject = _subject(f)
    f.rename(f.parent.parent / "cur" / (f.name.split(":2,")[0] + ":2,FS"))
    run = subprocess.run(["offlineimap", "-c", str(conf), "-o"], capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    assert subjects_on_server(srv, "INBOX", "FLAGGED") == [flagged_subject]
