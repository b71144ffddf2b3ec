"""Issue 6, nobody reaches another user's mailboxes, and names in modified UTF-7: `..`, `/`, the
same spelled in modified UTF-7 (`&AC4ALg-`, `&AC8-`), NUL, and hierarchy tricks, through every
command that takes a mailbox name; afterwards nothing exists outside the user's own Maildir and
the other user's mail is untouched. Non-ASCII names round-trip as modified UTF-7 and are kept
on disk the way Dovecot keeps them."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from imap.test_caches import append, msg, ok
from imap.wire import Wire, parse_values

pytestmark = pytest.mark.integration

GINA, GINA_PW = "gina@example.test", "gina-pw"
HANK, HANK_PW = "hank@other.test", "hank-pw"

TRICKS = [
    "../hank", "../../other.test/hank", "..", ".", "/etc", "/", "a/b", "&AC4ALg-",
    "&AC4ALg-/&AC4ALg-/other.test/hank", "&AC8-etc", "INBOX.&AC4ALg-", "x.&AC4ALg-.y", "&AC4ALgAv-hank",
    "&AAA-", "a&AAA-b", "INBOX/../..", ".Junk", "Junk..", "a..b", "..hank",
    "&AGE-",  # "a" in base64: not canonical modified UTF-7
    "&Jjo",   # unterminated
]
HARMLESS = ["~hank", "hank@other.test"]  # may be folder names, inside the user's own Maildir


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {GINA: GINA_PW, HANK: HANK_PW}, prefix="mailsift-imapnames-")


def connect(srv, user: str, password: str) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(user, password)
    return w


def quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tree(root: Path) -> dict[str, str]:
    """Every file under root -> sha256, and every directory -> 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            if f.startswith("mailsift-index") or f == "mailsift-uidvalidity":
                continue  # the index changes as hank reads his own mail
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def test_no_name_reaches_outside_the_users_own_maildir(srv) -> None:
    h = connect(srv, HANK, HANK_PW)
    append(h, "INBOX", msg("hank's secret", to=HANK))
    h.command("CREATE Private")
    append(h, "Private", msg("hank's private folder", to=HANK))
    h.close()
    g = connect(srv, GINA, GINA_PW)
    append(g, "INBOX", msg("gina's own", to=GINA))
    hank_home = srv.mail_root / "other.test" / "hank"
    gina_home = srv.mail_root / "example.test" / "gina"
    hank_before = tree(hank_home)
    top_before = sorted(os.listdir(srv.mail_root))
    outside_before = sorted(os.listdir(srv.mail_root.parent))
    g.command("SELECT INBOX")
    for name in TRICKS:
        q = quoted(name)
        for cmd in (f"SELECT {q}", f"EXAMINE {q}", f"STATUS {q} (MESSAGES)", f"CREATE {q}", f"DELETE {q}",
                    f"RENAME {q} Stolen", f"RENAME Junk {q}", f"SUBSCRIBE {q}", f"COPY 1 {q}", f"UID MOVE 1 {q}",
                    f"LIST {q} *", f'LIST "" {q}'):
            if cmd.startswith(("SELECT", "EXAMINE")):
                _, done = g.command(cmd)
                assert not ok(done), (cmd, done)
                g.command("SELECT INBOX")  # a failed SELECT leaves no mailbox selected
                continue
            untagged, done = g.command(cmd)
            if cmd.startswith("LIST"):
                assert not any(b"hank" in u.lower() or b"&ac4alg-" in u.lower() for u in untagged), (cmd, untagged)
                continue
            assert not ok(done), (cmd, done)
        data = msg("planted")
        _, done = g.command(f"APPEND {q} ".encode() + b"{%d+}\r\n" % len(data) + data)
        assert not ok(done), (name, done)
    for name in HARMLESS:
        _, done = g.command(f"CREATE {quoted(name)}")
        if ok(done):
            assert (gina_home / f".{name}" / "cur").is_dir()
            assert ok(g.command(f"DELETE {quoted(name)}")[1])
    # nothing of hank's changed, nothing new beside the users, nothing outside the mail root
    assert tree(hank_home) == hank_before
    assert sorted(os.listdir(srv.mail_root)) == top_before
    assert sorted(os.listdir(srv.mail_root.parent)) == outside_before
    for dirpath, dirnames, filenames in os.walk(gina_home):
        for d in dirnames:
            assert "/" not in d and d not in (".", "..") and not d.startswith(".."), d
            assert Path(dirpath, d).resolve().is_relative_to(gina_home.resolve())
    # gina still has her own mail, and no folder of hank's is listed to her
    untagged, _ = g.command('LIST "" *')
    assert not any(b"Private" in u for u in untagged)
    untagged, _ = g.command("STATUS INBOX (MESSAGES)")
    assert untagged[0].endswith(b"(MESSAGES 1)")
    g.close()
    # and hank's mail is all there for hank
    h = connect(srv, HANK, HANK_PW)
    untagged, _ = h.command("STATUS Private (MESSAGES)")
    assert untagged[0].endswith(b"(MESSAGES 1)")
    h.close()


def test_non_ascii_names_round_trip_in_modified_utf7(srv) -> None:
    g = connect(srv, GINA, GINA_PW)
    names = {"Entw&APw-rfe": "Entwürfe", "&ZeVnLIqe-": "日本語", "Caf&AOk-.Men&APw-": "Café.Menü",
             "A&-B": "A&B"}
    for wire, text in names.items():
        g.command(f"DELETE {quoted(wire)}")
        _, done = g.command(f"CREATE {quoted(wire)}")
        assert ok(done), (wire, done)
        append(g, quoted(wire), msg(f"in {wire}", to=GINA))
        untagged, done = g.command(f"SELECT {quoted(wire)}")
        assert ok(done) and b"* 1 EXISTS" in untagged, (wire, untagged)
        untagged, _ = g.command(f"STATUS {quoted(wire)} (MESSAGES)")
        assert untagged[0].rsplit(b" (", 1)[0][len(b"* STATUS "):].strip(b'"') == wire.encode(), untagged
    untagged, _ = g.command('LIST "" *')
    listed = {str(v) if not isinstance(v, bytes) else v.decode()
              for v in (parse_values(u[len(b"* LIST "):])[2] for u in untagged)}
    assert set(names) | {"Caf&AOk-"} <= listed  # the parent of Café.Menü exists too
    home = srv.mail_root / "example.test" / "gina"
    for wire in names:  # on disk as Dovecot keeps Maildir++ names: modified UTF-7
        assert (home / f".{wire}" / "cur").is_dir(), sorted(os.listdir(home))
    untagged, done = g.command(b"CREATE \"Fa\xc3\xa7ade\"")  # raw UTF-8 from a sloppy client
    if ok(done):
        untagged, _ = g.command('LIST "" Fa*')
        assert untagged == [b'* LIST (\\HasNoChildren) "." Fa&AOc-ade'], untagged
    g.close()


def test_login_names_cannot_point_into_another_mailbox(srv) -> None:
    for name in ("../other.test/hank", "gina@example.test/../../other.test/hank", "hank@other.test/..",
                 "../example.test/gina", "gina@example.test\x00hank@other.test"):
        w = Wire(srv.host, srv.imap_port)  # (3 failures end a connection)
        _, done = w.command(f"LOGIN {quoted(name)} {quoted(GINA_PW)}")
        assert b"NO [AUTHENTICATIONFAILED]" in done or b" BAD " in done, (name, done)
        w.close()
