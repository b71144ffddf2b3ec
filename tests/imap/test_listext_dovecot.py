"""Differential: LIST-EXTENDED (RFC 5258) and LIST-STATUS (RFC 5819) answers of `mailsift serve`
and of a private Dovecot 2.3 over the same folders, subscriptions and messages. Responses are
compared as parsed values (attributes as sets, STATUS items as a mapping, each STATUS with the
LIST response it follows); the order of the LIST responses is free (RFC 5258 section 3.3)."""

from __future__ import annotations

from typing import Any

import pytest

from imap import dovecot_pair
from imap.wire import Wire, parse_values

pytestmark = pytest.mark.integration

USER, PW = "lister@example.test", "lister-pw"

SETUP = ["CREATE T", "CREATE T.A", "CREATE T.A.One", "CREATE T.A.Two", "CREATE T.B", "CREATE T.B.Deep",
         "CREATE T.C", "CREATE T.Gone", "SUBSCRIBE T.A", "SUBSCRIBE T.A.Two", "SUBSCRIBE T.B.Deep",
         "SUBSCRIBE T.C", "SUBSCRIBE T.Gone", "DELETE T.Gone"]
MESSAGES = [("T.A.One", "\\Seen"), ("T.A.One", ""), ("T.A.One", "\\Flagged"), ("T.C", "")]

COMMANDS = [
    'LIST "" T*', 'LIST "" T.%', 'LIST "T." %', 'LIST () "" T*', 'LIST (REMOTE) "" T.%',
    'LIST (SUBSCRIBED) "" T*', 'LIST (SUBSCRIBED) "T." %', 'LIST (SUBSCRIBED) "T." *',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "T." %', 'LIST (SUBSCRIBED RECURSIVEMATCH) "" T*',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "T." % RETURN (CHILDREN)',
    'LIST (SUBSCRIBED REMOTE RECURSIVEMATCH) "" (T.A T.B T.A.Two)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "" (T.B T.B.Deep)',
    'LIST "" T* RETURN (CHILDREN)', 'LIST "" T* RETURN (SUBSCRIBED CHILDREN)', 'LIST "" T* RETURN ()',
    'LIST "" (T T.A.% T.C) RETURN (CHILDREN SUBSCRIBED)',
    'LIST "" T* RETURN (STATUS (MESSAGES UNSEEN UIDNEXT))',
    'LIST (SUBSCRIBED) "" T* RETURN (STATUS (MESSAGES UNSEEN) CHILDREN)',
    'LIST (SUBSCRIBED RECURSIVEMATCH) "T." % RETURN (STATUS (MESSAGES RECENT))',
    'LIST "" (Junk Sent Drafts Trash) RETURN (SPECIAL-USE)', 'LIST "" (Junk Sent Drafts Trash)',
    'LIST (SPECIAL-USE) "" (Junk Sent Drafts Trash T*)', 'LIST "" Junk',
    'LIST (RECURSIVEMATCH) "" %', 'LIST (REMOTE RECURSIVEMATCH) "" %', 'LIST (BOGUS) "" %',
    'LIST "" % RETURN (BOGUS)', 'LIST "" % RETURN (STATUS ())', 'LIST "" % RETURN (STATUS (BOGUS))',
]


def fill(w: Wire) -> None:
    for c in SETUP:
        _, done = w.command(c)
        assert b" OK " in done, (c, done)
    for i, (folder, flags) in enumerate(MESSAGES):
        data = f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode()
        _, done = w.command(f"APPEND {folder} ({flags}) ".encode() + b"{%d+}\r\n" % len(data) + data)
        assert b" OK " in done, done


@pytest.fixture(scope="module")
def pair(mailsift_bin: str):
    with dovecot_pair.servers(mailsift_bin, {USER: PW}, "imap-listdiff-") as peers, \
            dovecot_pair.sessions(peers, USER, PW, setup=fill) as wires:
        yield wires


def _text(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def normalised(untagged: list[bytes], done: bytes) -> tuple[str, list[Any]]:
    """(OK/NO/BAD, sorted [(name, attributes, extended data, STATUS items or None)])."""
    status = done.split(b" ", 2)[1].decode()
    out: list[list[Any]] = []
    for line in untagged:
        if line.startswith(b"* LIST "):
            v = parse_values(line[len(b"* LIST "):])
            attrs = sorted(a.lower() for a in v[0])
            extra = repr([[_text(x) for x in e] if isinstance(e, list) else _text(e) for e in v[3:]])
            out.append([_text(v[2]), attrs, extra, None])
        elif line.startswith(b"* STATUS "):
            v = parse_values(line[len(b"* STATUS "):])
            assert out and out[-1][0] == _text(v[0]), (line, out)  # right after its LIST response
            out[-1][3] = dict(zip(v[1][::2], v[1][1::2]))
        else:
            raise AssertionError(line)
    return status, sorted(out, key=repr)


def test_extended_list_and_list_status_agree_with_dovecot(pair) -> None:
    ours, theirs = pair
    diffs = []
    for command in COMMANDS:
        a = normalised(*ours.command(command))
        b = normalised(*theirs.command(command))
        if a != b:
            diffs.append(f"{command}\n  dovecot: {b}\n  ours:    {a}")
    assert not diffs, "\n".join(diffs)


def test_the_comparison_sees_differences(pair) -> None:
    """The normalisation keeps what matters: another subscription changes the answer."""
    ours, theirs = pair
    command = 'LIST (SUBSCRIBED RECURSIVEMATCH) "T." % RETURN (STATUS (MESSAGES))'
    before = normalised(*ours.command(command))
    assert before == normalised(*theirs.command(command))
    ours.command("SUBSCRIBE T.B")
    try:
        assert normalised(*ours.command(command)) != before
    finally:
        ours.command("UNSUBSCRIBE T.B")
