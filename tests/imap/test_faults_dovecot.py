"""Issue 14's three conformance faults, differentially: the same commands to `mailsift serve`
and to a private Dovecot 2.3; status, response codes and the untagged responses that matter must
agree (an atom with `[` in SELECT and LIST, LSUB's `\\Noselect` parents, MOVE into the selected
mailbox, DELETE of a folder with children)."""

from __future__ import annotations

import re

import pytest

from imap import dovecot_pair
from imap.dovecot_pair import status_of

pytestmark = pytest.mark.integration

USER, PW = "xena@example.test", "xena-pw"
ODD = b"!#$&'+,-.0123456789:;<=>?@^_`|[}"


@pytest.fixture(scope="module")
def pair(mailsift_bin: str):
    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-fdiff-") as peers, \
            dovecot_pair.sessions(peers, USER, PW) as wires:
        yield wires


def both(pair, command: bytes) -> tuple[tuple[list[bytes], bytes], tuple[list[bytes], bytes]]:
    ours, theirs = pair
    return ours.command(command), theirs.command(command)


def test_an_atom_with_an_open_bracket(pair) -> None:
    for command in (b"SELECT " + ODD, b'LIST "" ' + ODD + b"%*", b"SELECT no[such", b"EXAMINE " + ODD):
        (a_u, a_d), (b_u, b_d) = both(pair, command)
        assert status_of(a_d).split()[0] == status_of(b_d).split()[0], (command, a_d, b_d)
        assert a_u == b_u == [], (command, a_u, b_u)
    (_, a_d), (_, b_d) = both(pair, b"SELECT " + ODD)
    assert a_d.split(b" ", 1)[1] == re.sub(rb" \(\d.*secs\)\.$", b"", b_d.split(b" ", 1)[1]), (a_d, b_d)


def lsub_set(untagged: list[bytes]) -> set[tuple[bool, bytes]]:
    """LSUB entries of the test hierarchy as (\\Noselect?, name)."""
    out = set()
    for u in untagged:
        m = re.match(rb'^\* LSUB \(([^)]*)\) "\." (.*)$', u)
        assert m, u
        if m.group(2).startswith(b"parent"):
            out.add((b"\\Noselect" in m.group(1), m.group(2)))
    return out


def test_lsub_noselect_parents(pair) -> None:
    ours, theirs = pair
    for w in (ours, theirs):
        for name in ("parent", "parent.a", "parent.a.b", "parent.c"):
            w.command(f"CREATE {name}")
            w.command(f"UNSUBSCRIBE {name}")
        for name in ("parent.a.b", "parent.c"):
            _, done = w.command(f"SUBSCRIBE {name}")
            assert b" OK " in done, done
    for pattern in (b"parent.%", b"%", b"*", b"parent.*", b"parent.a.%", b"%.%"):
        (a_u, a_d), (b_u, b_d) = both(pair, b'LSUB "" ' + pattern)
        assert status_of(a_d) == status_of(b_d) == b"OK"
        assert lsub_set(a_u) == lsub_set(b_u), (pattern, a_u, b_u)


def test_move_into_the_selected_mailbox(pair) -> None:
    ours, theirs = pair
    m = b"Subject: move me\r\n\r\nhello\r\n"
    for w in (ours, theirs):
        w.command("CREATE MoveHere")
        for flags in (b"(\\Flagged) ", b""):
            _, done = w.command(b"APPEND MoveHere " + flags + b"{%d+}\r\n" % len(m) + m)
            assert b" OK " in done, done
        _, done = w.command("SELECT MoveHere")
        assert b" OK " in done, done
    for command in (b"MOVE 1 MoveHere", b"UID MOVE 2 MoveHere", b"UID FETCH 1:* (UID FLAGS)"):
        (a_u, a_d), (b_u, b_d) = both(pair, command)
        assert status_of(a_d) == status_of(b_d) == b"OK", (command, a_d, b_d)
        # (UIDVALIDITY differs; we send RECENT with every EXISTS, Dovecot only when it changed)
        strip = [re.sub(rb"\[COPYUID \d+ ", b"[COPYUID v ", u).split(b"]")[0] for u in a_u
                 if not u.endswith(b" RECENT")]
        their = [re.sub(rb"\[COPYUID \d+ ", b"[COPYUID v ", u).split(b"]")[0] for u in b_u
                 if not u.endswith(b" RECENT")]
        assert strip == their, (command, a_u, b_u)


def list_attrs(untagged: list[bytes]) -> dict[bytes, set[bytes]]:
    out = {}
    for u in untagged:
        m = re.match(rb'^\* LIST \(([^)]*)\) "\." (.*)$', u)
        assert m, u
        out[m.group(2)] = set(m.group(1).split())
    return out


def test_delete_a_folder_with_children(pair) -> None:
    """RFC 3501 6.3.4: the folder and its messages go, its inferiors stay, the name becomes
    \\Noselect; DELETE of that \\Noselect name is an error (Dovecot: `NO [NONEXISTENT]`, ours:
    `NO [CANNOT]`, in IMAP4rev2 `[HASCHILDREN]`: only NO is compared). Dovecot 2.3.19 (Maildir++)
    lists the deleted name as `(\\HasChildren)` without `\\Noselect` although it cannot be selected
    (its list index is not updated): there we follow the RFC, the rest of LIST must agree."""
    ours, theirs = pair
    m = b"Subject: parent mail\r\n\r\nhello\r\n"
    for w in (ours, theirs):
        for name in ("Dparent", "Dparent.kid"):
            assert b" OK " in w.command(f"CREATE {name}")[1]
        for name in ("Dparent", "Dparent.kid"):
            _, done = w.command(f"APPEND {name} ".encode() + b"{%d+}\r\n" % len(m) + m)
            assert b" OK " in done, done
    steps = [(b"DELETE Dparent", b"OK"), (b'LIST "" Dparent*', b"OK"), (b"SELECT Dparent", b"NO"),
             (b"STATUS Dparent (MESSAGES)", b"NO"), (b"DELETE Dparent", b"NO"),
             (b"STATUS Dparent.kid (MESSAGES)", b"OK"), (b"CREATE Dparent", b"OK"),
             (b"STATUS Dparent (MESSAGES)", b"OK"), (b'LIST "" Dparent*', b"OK"),
             (b"DELETE Dparent.kid", b"OK"), (b"DELETE Dparent", b"OK"), (b'LIST "" Dparent*', b"OK"),
             (b"DELETE Dparent", b"NO")]
    for i, (command, want) in enumerate(steps):
        (a_u, a_d), (b_u, b_d) = both(pair, command)
        assert status_of(a_d).split()[0] == status_of(b_d).split()[0] == want, (command, a_d, b_d)
        if command.startswith(b"LIST"):
            a_l, b_l = list_attrs(a_u), list_attrs(b_u)
            noselect = a_l.get(b"Dparent", set()) & {b"\\Noselect"}
            assert noselect == ({b"\\Noselect"} if i == 1 else set()), (command, a_u)
            assert {k: v - noselect for k, v in a_l.items()} == {k: v - noselect for k, v in b_l.items()}, \
                (command, a_u, b_u)
        elif command.startswith(b"STATUS"):
            assert a_u == b_u, (command, a_u, b_u)
    (a_u, _), _ = both(pair, b'LIST "" Dparent*')
    assert a_u == []
