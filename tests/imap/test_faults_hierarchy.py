"""Folder hierarchy over IMAP, differentially: the same commands to `mailsift serve` and to a
private Dovecot 2.3 (Maildir++); status and what LIST and STATUS answer must agree. RENAME of a
\\Noselect parent renames its inferiors (RFC 3501 / RFC 9051 6.3.5)."""

from __future__ import annotations

import re

import pytest

from imap import dovecot_pair
from imap.dovecot_pair import status_of

pytestmark = pytest.mark.integration

USER, PW = "yuri@example.test", "yuri-pw"
MSG = b"Subject: kept\r\n\r\nhello\r\n"


@pytest.fixture(scope="module")
def pair(mailsift_bin: str):
    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-hier-") as peers, \
            dovecot_pair.sessions(peers, USER, PW) as wires:
        yield wires


def listed(untagged: list[bytes]) -> dict[bytes, set[bytes]]:
    """LIST responses as {name: attributes}."""
    out = {}
    for u in untagged:
        m = re.match(rb'^\* LIST \(([^)]*)\) "\." (.*)$', u)
        assert m, u
        out[m.group(2)] = set(m.group(1).split())
    return out


def run(pair, steps: list[tuple[str, str]], deleted: frozenset[bytes] = frozenset()) -> None:
    """Each (command, expected status) on both servers: the status, LIST's names and attributes
    and STATUS's answer must agree. `deleted`: names DELETE left as parents, which Dovecot 2.3.19
    lists without `\\Noselect` though they cannot be selected (its list index is not updated;
    test_faults_dovecot.py): ours must say `\\Noselect` there, the rest must agree."""
    ours, theirs = pair
    for command, want in steps:
        a_u, a_d = ours.command(command)
        b_u, b_d = theirs.command(command)
        assert status_of(a_d).split()[0] == status_of(b_d).split()[0] == want.encode(), (command, a_d, b_d)
        if command.startswith("LIST"):
            a_l, b_l = listed(a_u), listed(b_u)
            for name in deleted & a_l.keys():
                assert b"\\Noselect" in a_l[name], (command, a_u)
                a_l[name].discard(b"\\Noselect")
            assert a_l == b_l, (command, a_u, b_u)
        elif command.startswith("STATUS"):
            assert a_u == b_u, (command, a_u, b_u)


def append(pair, folder: str) -> None:
    for w in pair:
        _, done = w.command(f"APPEND {folder} ".encode() + b"{%d+}\r\n" % len(MSG) + MSG)
        assert b" OK " in done, done


def test_rename_a_deleted_parent(pair) -> None:
    """After DELETE of a folder with children its name is \\Noselect; RENAME moves the hierarchy
    (Dovecot: OK), the new name is a parent only, the messages and UIDVALIDITY go along."""
    run(pair, [("CREATE Rp", "OK"), ("CREATE Rp.b", "OK"), ("CREATE Rp.b.c", "OK")])
    append(pair, "Rp.b.c")
    ours = pair[0]
    before = ours.command("STATUS Rp.b.c (UIDVALIDITY)")[0]
    run(pair, [("DELETE Rp", "OK"), ("RENAME Rp Rz", "OK"),
               ('LIST "" Rz*', "OK"), ('LIST "" Rp*', "OK"),
               ("STATUS Rz.b.c (MESSAGES UIDNEXT)", "OK"), ("SELECT Rz", "NO"), ("STATUS Rz (MESSAGES)", "NO"),
               ("STATUS Rp.b.c (MESSAGES)", "NO"), ("RENAME Rp Rq", "NO"), ("RENAME Rz Rz.inner", "NO"),
               ("SELECT Rz.b.c", "OK"), ("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])", "OK"), ("UNSELECT", "OK")])
    assert ours.command("STATUS Rz.b.c (UIDVALIDITY)")[0] == [before[0].replace(b"Rp.b.c", b"Rz.b.c")]


def test_create_leaves_missing_superiors_noselect(pair) -> None:
    """CREATE a.b.c makes a.b.c alone: a and a.b are \\Noselect parents (Dovecot's Maildir++),
    and a parent left by DELETE is never revived by creating under it."""
    run(pair, [("CREATE Na.b.c", "OK"), ('LIST "" Na*', "OK"), ("SELECT Na", "NO"), ("SELECT Na.b", "NO"),
               ("STATUS Na.b (MESSAGES)", "NO"), ("CREATE Na.b.c", "NO"),
               ("CREATE Da", "OK"), ("CREATE Da.x", "OK"), ("DELETE Da", "OK"), ("CREATE Da.b.c", "OK"),
               ('LIST "" Da*', "OK"), ("SELECT Da", "NO"), ("STATUS Da (MESSAGES)", "NO"),
               ("SELECT Da.b", "NO")], deleted=frozenset({b"Da"}))
    run(pair, [("CREATE Da", "OK"), ("STATUS Da (MESSAGES)", "OK"), ('LIST "" Da*', "OK")])
    append(pair, "Na.b.c")
    # a rename makes no folder of the new name's missing superiors either, and onto a parent
    # that only its inferiors make is allowed (the name was not a folder)
    run(pair, [("RENAME Na.b.c Nm.x.y", "OK"), ('LIST "" N*', "OK"), ("SELECT Nm.x", "NO"),
               ("STATUS Nm.x.y (MESSAGES)", "OK"), ("CREATE Ny", "OK"), ("RENAME Ny Nm", "OK"),
               ('LIST "" N*', "OK"), ("STATUS Nm (MESSAGES)", "OK")])
