"""End to end through IMAP: LMTP files a message the filter flagged into Junk (not learned);
the user MOVEs a ham out of Junk and COPY + EXPUNGEs a spam into Junk with imaplib; the learn
record, the model's counts and its scores change accordingly.

Runs `mailsift serve` with the learner attached when mailsift serve starts it itself ([feedback]
in the config), else tests/feedback/serve_with_learner.py (the same Server plus start_learner)."""

from __future__ import annotations

import imaplib
import shutil
import smtplib
import sys
from pathlib import Path
from typing import Iterator

import pytest
from harness.procs import Daemon, free_port, tcp_ready, wait_for

from mailsift.classifier.api import load_model
from mailsift.classifier.record import LearnRecord, message_digest
from mailsift.store.users import Users

USER, PASSWORD = "carol@example.test", "carol-pw"
HERE = Path(__file__).resolve().parent


def serve_is_wired() -> bool:
    from mailsift import config

    serve = "".join(p.read_text() for p in (Path(config.__file__).parent / "serve").glob("*.py"))
    return "feedback" in {f for f in config.Config.__dataclass_fields__} and "start_learner" in serve


class Served:
    def __init__(self, workdir: Path, model: Path, mailsift_bin: str) -> None:
        self.imap_port, self.lmtp_port = free_port(), free_port()
        users = workdir / "users.db"
        Users(users).add(USER, PASSWORD)
        self.config = workdir / "mailsift.toml"
        self.config.write_text(
            f'[classifier]\ndbpath = "{model}"\n'
            f'[store]\nmail_root = "{workdir / "mail"}"\nusers = "{users}"\n'
            f'lmtp = "127.0.0.1:{self.lmtp_port}"\nimap = "127.0.0.1:{self.imap_port}"\n'
            'pop3 = "off"\nlookup = "off"\nhostname = "imap.mailsift.test"\n'
            + ("[feedback]\nsave_interval = 1.0\n" if serve_is_wired() else ""))
        argv = ([mailsift_bin, "serve", "--config", str(self.config), "--log-level", "DEBUG"] if serve_is_wired()
                else [sys.executable, str(HERE / "serve_with_learner.py"), str(self.config)])
        self.daemon = Daemon(argv, workdir / "serve.log").start().wait_ready(
            lambda: tcp_ready("127.0.0.1", self.imap_port) and tcp_ready("127.0.0.1", self.lmtp_port),
            30, what="mailsift serve")

    def deliver(self, message: bytes) -> None:
        with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
            lmtp.sendmail("sender@example.net", [USER], message)


@pytest.fixture
def served(tmp_path: Path, good_model: Path, mailsift_bin: str) -> Iterator[Served]:
    srv = Served(tmp_path, good_model, mailsift_bin)
    yield srv
    srv.daemon.stop()
    shutil.rmtree(tmp_path / "mail", ignore_errors=True)


def flagged(raw: bytes) -> bytes:
    """The message as the milter passes a spam verdict on: X-Spam-Flag: YES on top."""
    return b"X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=9.9 required=5.0\r\n" + raw


def label_of(model: Path, raw: bytes) -> str | None:
    with LearnRecord(model) as rec:
        known = rec.get(message_digest(raw))
    return known[0] if known else None


def test_imap_moves_train_the_model(served: Served, good_model: Path,
                                    fresh_messages: dict[str, list[bytes]]) -> None:
    spam_in_junk = fresh_messages["spam"][30]   # the filter got it right
    ham_in_junk = fresh_messages["ham"][30]     # the filter got it wrong: the user rescues it
    spam_in_inbox = fresh_messages["spam"][31]  # the filter missed it: the user files it as junk
    before = load_model(good_model)
    p_ham, p_spam = before.spamminess(ham_in_junk), before.spamminess(spam_in_inbox)
    served.deliver(flagged(spam_in_junk))
    served.deliver(flagged(ham_in_junk))
    served.deliver(spam_in_inbox)

    imap = imaplib.IMAP4("127.0.0.1", served.imap_port)
    try:
        imap.login(USER, PASSWORD)
        assert imap.select("Junk")[1] == [b"2"]
        typ, data = imap.uid("SEARCH", None, "ALL")
        junk_uids = data[0].split()
        # the second message delivered into Junk is the ham: MOVE it out
        typ, _ = imap.uid("MOVE", junk_uids[1].decode(), "INBOX")
        assert typ == "OK"
        imap.select("INBOX")
        typ, data = imap.uid("SEARCH", None, "ALL")
        inbox_uids = data[0].split()
        assert len(inbox_uids) == 2
        first = inbox_uids[0].decode()          # the spam the filter missed (delivered first)
        assert imap.uid("COPY", first, "Junk")[0] == "OK"
        assert imap.uid("STORE", first, "+FLAGS.SILENT", r"(\Deleted)")[0] == "OK"
        assert imap.expunge()[0] == "OK"
        imap.logout()
    finally:
        try:
            imap.shutdown()
        except OSError:
            pass

    wait_for(lambda: label_of(good_model, spam_in_inbox) == "spam" and label_of(good_model, ham_in_junk) == "ham",
             timeout=60, what="the learner learned both moves")
    assert label_of(good_model, spam_in_junk) is None          # LMTP filing into Junk is not learned
    after = load_model(good_model)
    assert (after.n_ham_, after.n_spam_) == (before.n_ham_ + 1, before.n_spam_ + 1)
    assert after.spamminess(ham_in_junk) < p_ham
    assert after.spamminess(spam_in_inbox) > p_spam
