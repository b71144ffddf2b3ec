"""The private Postfix instance the integration tests stand on: it delivers and leaves /etc/postfix as it found it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        h.update(str(p).encode())
        if p.is_file() and not p.is_symlink():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.integration
def test_private_instance_delivers_and_leaves_etc_postfix_alone(postfix_factory):
    before = _tree_digest(Path("/etc/postfix"))
    pf = postfix_factory()
    refused = pf.send("alice@sender.test", ["bob@example.test"],
                      b"From: alice@sender.test\r\nSubject: harness\r\n\r\nhello harness\r\n")
    assert refused == {}
    (msg,) = pf.wait_delivered(1)
    assert b"hello harness" in msg
    assert b"Delivered-To: bob@example.test" in msg
    pf.stop()
    assert not pf.running
    assert _tree_digest(Path("/etc/postfix")) == before
