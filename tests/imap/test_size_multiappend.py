"""STATUS=SIZE (RFC 8438) against a real `mailsift serve` and, differentially, a private
Dovecot 2.3 holding the same messages: STATUS SIZE (also through LIST-STATUS) equals the sum
of RFC822.SIZE and Dovecot's figure."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from harness.dovecot import DovecotInstance
from imap import dovecot_reference as ref
from imap.conftest import ImapServer
from imap.wire import Wire, fetch_items, parse_values
from mailsift.protocols.imap.parser import format_datetime

USER, PW = "multi@example.test", "multi-pw"


@pytest.fixture(scope="module")
def pair(mailsift_bin: str, data_dir: Path, corpora: Path):
    files = ref.sample_messages(data_dir, corpora, 4, seed=8438)
    workdir = Path(tempfile.mkdtemp(prefix="imap-sizediff-"))
    (workdir / "mailsift").mkdir()
    ours = ImapServer(mailsift_bin, workdir / "mailsift", {USER: PW})
    dc = DovecotInstance(workdir / "dovecot", {USER: PW}, pop3=False, lmtp=False)
    wires: list[Wire] = []
    try:
        ours.start()
        dc.start()
        for host, port in ((ours.host, ours.imap_port), (dc.host, dc.imap_port)):
            w = Wire(host, port)
            w.login(USER, PW)
            for i, f in enumerate(files, 1):
                data = f.read_bytes()
                flags, date = ref.append_args(i)
                _, done = w.command(f'APPEND INBOX ({flags}) "{format_datetime(date)}" '.encode()
                                    + b"{%d+}\r\n" % len(data) + data)
                assert b" OK " in done, done
            wires.append(w)
        yield files, wires[0], wires[1]
    finally:
        for w in wires:
            w.close()
        ours.stop()
        dc.stop()
        assert "Traceback" not in ours.log(), ours.log()[-3000:]
        shutil.rmtree(workdir, ignore_errors=True)


def status(w: Wire, folder: str, items: str) -> dict[str, int]:
    untagged, done = w.command(f"STATUS {folder} ({items})")
    assert b" OK " in done, done
    v = parse_values(untagged[0][len(b"* STATUS "):])
    return dict(zip(v[1][::2], v[1][1::2]))


def test_capabilities(pair) -> None:
    _, ours, _ = pair
    caps, _ = ours.command("CAPABILITY")
    assert b" STATUS=SIZE" in caps[0]


def test_status_size_is_the_sum_of_rfc822_size_and_agrees_with_dovecot(pair) -> None:
    files, ours, theirs = pair
    assert len(files) >= 20
    a, b = status(ours, "INBOX", "MESSAGES SIZE"), status(theirs, "INBOX", "SIZE MESSAGES")
    assert a == b and a["MESSAGES"] == len(files)
    ours.command("EXAMINE INBOX")
    untagged, _ = ours.command("FETCH 1:* RFC822.SIZE")
    assert a["SIZE"] == sum(fetch_items(u)["RFC822.SIZE"] for u in untagged)
    ours.command("UNSELECT")
    for w in (ours, theirs):
        untagged, done = w.command('LIST "" INBOX RETURN (STATUS (SIZE))')
        assert untagged[-1] == b"* STATUS INBOX (SIZE %d)" % a["SIZE"], untagged
