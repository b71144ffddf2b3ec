"""End to end (issue 6): Postfix -> milter (clamd + a trained model) -> LMTP -> store -> IMAP,
and back: what the user files into or rescues from Junk trains the model the milter uses.

One private stack per test on loopback: clamd, `mailsift serve` (LMTP, IMAP, the socketmap
lookup, the feedback learner) and `mailsift milter` from one generated TOML file, Postfix
configured with what `mailsift postfix-config` prints. The model is trained in the fixture from
the shared corpora with `mailsift learn`, into the test's own model directory.

The messages are tests/data/e2e/*.eml:
- spam_obvious / ham_obvious: filed into Junk / INBOX by the milter's verdict.
- ham_rescued: a ham the user's own filter (a procmail-style rule: another program moving the
  file into `.Junk/` in the Maildir) files into Junk; the user MOVEs it out. (An address detail,
  `erin+Junk@`, never files into a special folder.)
- spam_sneaky: a spam written like a list reply about invented things ("zentrovia quorvex"); the
  corpus-trained model scores it as ham, so it lands in INBOX. The user COPY + EXPUNGEs it into
  Junk; after the learner saved and the milter reloaded, a near-duplicate (other Message-ID and
  Date) sent again over SMTP scores higher and is filed into Junk.
"""

from __future__ import annotations

import imaplib
import re
import secrets
import shlex
import shutil
import smtplib
import subprocess
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.clamd import ClamdInstance, available
from harness.postfix import PostfixInstance, make_workdir
from harness.procs import Daemon, free_port, tcp_ready, unix_ready, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DATA = Path(__file__).resolve().parent.parent / "data" / "e2e"
USER = "erin@example.test"
TRAIN_EACH = 250
REQUIRED = 5.0


@dataclass
class Stack:
    workdir: Path
    bin: str
    model: Path
    config: Path
    imap_port: int
    password: str
    daemons: dict[str, Daemon] = field(default_factory=dict)
    clamd: ClamdInstance | None = None
    postfix: PostfixInstance | None = None

    # -- running commands as a user would ------------------------------------------------
    def mailsift(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        res = subprocess.run([self.bin, *args], input=stdin, capture_output=True, text=True, timeout=timeout)
        assert res.returncode == 0, f"mailsift {' '.join(args)} failed:\n{res.stdout}{res.stderr}"
        return res.stdout

    def dump(self) -> dict[str, int]:
        """`mailsift learn --dump`: the model's counts and the learn record's."""
        out = self.mailsift("learn", "--dump", "--dbpath", str(self.model))
        model_ham = re.search(r"^ham: (\d+)$", out, re.M)
        model_spam = re.search(r"^spam: (\d+)$", out, re.M)
        record = re.search(r"^learn record: (\d+) ham, (\d+) spam$", out, re.M)
        assert model_ham and model_spam and record, out
        return {"ham": int(model_ham.group(1)), "spam": int(model_spam.group(1)),
                "record_ham": int(record.group(1)), "record_spam": int(record.group(2))}

    def milter_loads(self) -> int:
        """The milter's latest model load number (its log: "model ... loaded (load #N)")."""
        loads = re.findall(r"loaded \(load #(\d+)\)", self.daemons["milter"].log())
        return max(map(int, loads), default=0)

    def send(self, raw: bytes, rcpt: str = USER) -> None:
        assert self.postfix is not None
        with smtplib.SMTP(self.postfix.host, self.postfix.smtp_port, timeout=60) as smtp:
            smtp.sendmail("sender@outside.test", [rcpt], raw)

    def logs(self) -> str:
        parts = [f"--- {name} ---\n{d.log()[-3000:]}" for name, d in self.daemons.items()]
        if self.postfix is not None:
            parts.append(f"--- postfix ---\n{self.postfix.log_text()[-3000:]}")
        return "\n".join(parts)


def _corpus(corpora: Path, folder: str) -> list[str]:
    return [str(p) for p in sorted((corpora / folder).iterdir()) if p.is_file()][:TRAIN_EACH]


def _write_config(stack: Stack, clamd_socket: Path) -> None:
    sock = stack.workdir / "sock"
    stack.config.write_text(f"""\
[logging]
level = "INFO"

[classifier]
dbpath = "{stack.model}"
required = {REQUIRED}

[milter]
socket = "unix:{sock / 'milter.sock'}"
clamd = "unix:{clamd_socket}"
socket_mode = "0666"
socket_group = ""
reload_interval = 0.5

[store]
mail_root = "{stack.workdir / 'mail'}"
users = "{stack.workdir / 'users.db'}"
lmtp = "unix:{sock / 'lmtp.sock'}"
lookup = "unix:{sock / 'lookup.sock'}"
imap = "127.0.0.1:{stack.imap_port}"
pop3 = "off"
hostname = "mx.mailsift.test"

[feedback]
save_interval = 1.0
""")


def _postfix_main(stack: Stack) -> dict[str, str]:
    """main.cf settings: exactly the `postconf -e` lines `mailsift postfix-config` prints."""
    main: dict[str, str] = {}
    for part in ("milter", "store"):
        out = stack.mailsift("postfix-config", "--part", part, "--config", str(stack.config))
        for line in out.splitlines():
            if line.startswith("postconf -e "):
                key, _, value = shlex.split(line)[2].partition("=")
                main[key.strip()] = value.strip()
    assert main["smtpd_milters"] == f"unix:{stack.workdir / 'sock' / 'milter.sock'}", main
    assert main["virtual_transport"].startswith("lmtp:unix:"), main
    return main


@pytest.fixture
def stack(corpora: Path, mailsift_bin: str) -> Iterator[Stack]:
    if not available():
        pytest.skip("clamd, sigtool or clamav-testfiles not installed")
    workdir = make_workdir("mailsift-e2e-")
    (workdir / "sock").mkdir(mode=0o755)
    st = Stack(workdir=workdir, bin=mailsift_bin, model=workdir / "model", config=workdir / "mailsift.toml",
               imap_port=free_port(), password=secrets.token_urlsafe(12))
    try:
        # A model trained from the corpora, the way a user starts one (sa-learn style).
        st.mailsift("learn", "--spam", "--no-progress", "--dbpath", str(st.model),
                    *_corpus(corpora, "spamassassin/spam"), timeout=300)
        st.mailsift("learn", "--ham", "--no-progress", "--dbpath", str(st.model),
                    *_corpus(corpora, "spamassassin/easy_ham"), timeout=300)
        st.clamd = ClamdInstance(workdir / "clamd", tcp=False).start()
        _write_config(st, st.clamd.socket)
        st.mailsift("user", "--config", str(st.config), "add", USER, "--stdin", stdin=st.password + "\n")

        sock = workdir / "sock"
        serve = st.daemons["serve"] = Daemon([mailsift_bin, "serve", "--config", str(st.config)],
                                             workdir / "serve.log").start()
        wait_for(lambda: not serve.alive() or (unix_ready(sock / "lmtp.sock") and unix_ready(sock / "lookup.sock")
                                               and tcp_ready("127.0.0.1", st.imap_port)),
                 60, what="mailsift serve")
        assert serve.alive(), serve.log()
        milter = st.daemons["milter"] = Daemon([mailsift_bin, "milter", "--config", str(st.config)],
                                               workdir / "milter.log").start()
        wait_for(lambda: not milter.alive() or (unix_ready(sock / "milter.sock") and st.milter_loads() >= 1),
                 60, what="mailsift milter")
        assert milter.alive(), milter.log()

        st.postfix = PostfixInstance(workdir / "postfix", main=_postfix_main(st))
        st.postfix.start()
        yield st
    finally:
        if st.postfix is not None:
            st.postfix.stop()
        for daemon in st.daemons.values():
            daemon.stop()
        if st.clamd is not None:
            st.clamd.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


# -- IMAP helpers ----------------------------------------------------------------------------

def _ok(resp: tuple[str, list]) -> list:
    typ, data = resp
    assert typ == "OK", resp
    return data


def find(imap: imaplib.IMAP4, folder: str, message_id: str) -> int | None:
    """The UID of the message with this Message-ID in `folder`, or None."""
    _ok(imap.select(folder))
    data = _ok(imap.uid("SEARCH", "HEADER", "Message-ID", f"<{message_id}>"))
    uids = data[0].split() if data and data[0] else []
    assert len(uids) <= 1, (folder, message_id, uids)
    return int(uids[0]) if uids else None


def arrived(imap: imaplib.IMAP4, message_id: str, stack: Stack) -> tuple[str, int]:
    """Wait for a message to be delivered; (folder, uid) where it was filed."""
    def where() -> tuple[str, int] | None:
        for folder in ("INBOX", "Junk"):
            uid = find(imap, folder, message_id)
            if uid is not None:
                return folder, uid
        return None
    try:
        return wait_for(where, 60, interval=0.2, what=f"<{message_id}> delivered")  # type: ignore[return-value]
    except TimeoutError:
        raise AssertionError(f"<{message_id}> never arrived\n{stack.logs()}") from None


def file_into_junk_outside(stack: Stack, message_id: str) -> None:
    """Move a delivered message's file from INBOX into .Junk/new/ as procmail or mutt would."""
    maildir = stack.workdir / "mail" / USER.split("@")[1] / USER.split("@")[0]
    for sub in ("new", "cur"):
        for path in (maildir / sub).iterdir():
            if f"<{message_id}>".encode() in path.read_bytes():
                path.rename(maildir / ".Junk" / "new" / path.name.split(":")[0])
                return
    raise AssertionError(f"<{message_id}> not in INBOX's files")


def header_of(imap: imaplib.IMAP4, folder: str, uid: int) -> dict[str, str]:
    _ok(imap.select(folder))
    data = _ok(imap.uid("FETCH", str(uid), "(BODY.PEEK[HEADER])"))
    msg = message_from_bytes(data[0][1])
    return {k: str(v) for k, v in msg.items()}


def learned_label(model: Path, raw: bytes) -> str | None:
    """What the learn record holds for this message (its digest: Message-ID + body)."""
    from mailsift.classifier.record import LearnRecord, message_digest

    with LearnRecord(model) as record:
        known = record.get(message_digest(raw))
    return known[0] if known else None


def spam_score(headers: dict[str, str]) -> float:
    return float(headers["X-Spam-Score"])


def poll(pred: Callable[[], object], what: str, stack: Stack, timeout: float = 30) -> object:
    try:
        return wait_for(pred, timeout, interval=0.25, what=what)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}\n{stack.logs()}") from None


def near_duplicate(raw: bytes) -> bytes:
    """The same message with another Message-ID (...-1@ -> ...-2@) and Date: new to the learn record."""
    out = re.sub(rb"(?m)^(Message-ID: <[^@>]*)-1@", rb"\1-2@", raw, count=1)
    out = re.sub(rb"(?m)^(Date: .*) 10:(\d\d):00 ", rb"\1 12:\2:00 ", out, count=1)
    assert out.count(b"-2@") == 1 and b" 12:" in out and out != raw
    return out


def message_id(raw: bytes) -> str:
    found = re.search(rb"(?m)^Message-ID: <([^>]+)>", raw)
    assert found
    return found.group(1).decode()


# -- the test --------------------------------------------------------------------------------

def test_pipeline_files_and_learns_from_junk_moves(stack: Stack) -> None:
    msgs = {p.stem: p.read_bytes() for p in DATA.glob("*.eml")}
    ids = {name: message_id(raw) for name, raw in msgs.items()}
    before = stack.dump()
    assert before == {"ham": TRAIN_EACH, "spam": TRAIN_EACH, "record_ham": TRAIN_EACH, "record_spam": TRAIN_EACH}

    stack.send(msgs["spam_obvious"])
    stack.send(msgs["ham_obvious"])
    stack.send(msgs["ham_flagged"])  # a ham the corpus-trained model takes for spam
    stack.send(msgs["ham_rescued"], rcpt="erin+Junk@example.test")  # a detail never files into Junk
    stack.send(msgs["spam_sneaky"])  # a spam the model takes for ham

    imap = imaplib.IMAP4("127.0.0.1", stack.imap_port, timeout=30)
    try:
        _ok(imap.login(USER, stack.password))
        assert arrived(imap, ids["ham_rescued"], stack)[0] == "INBOX"
        file_into_junk_outside(stack, ids["ham_rescued"])  # the user's own rule files it into Junk

        # 1. The milter's verdict decides the folder; every message was scanned by clamd.
        seen: dict[str, tuple[str, int, dict[str, str]]] = {}
        for name in ("spam_obvious", "ham_obvious", "ham_flagged", "ham_rescued", "spam_sneaky"):
            folder, uid = arrived(imap, ids[name], stack)
            seen[name] = (folder, uid, header_of(imap, folder, uid))
            assert seen[name][2]["X-Virus-Status"] == "Clean", seen[name]
            assert seen[name][2]["X-Virus-Scanned"].endswith("(clamd)"), seen[name]
        for name in ("spam_obvious", "ham_flagged"):
            folder, _, h = seen[name]
            assert folder == "Junk" and h.get("X-Spam-Flag") == "YES" and spam_score(h) >= REQUIRED, seen[name]
        for name in ("ham_obvious", "spam_sneaky"):
            folder, _, h = seen[name]
            assert folder == "INBOX" and "X-Spam-Flag" not in h and spam_score(h) < REQUIRED, seen[name]
        folder, _, h = seen["ham_rescued"]
        assert folder == "Junk" and "X-Spam-Flag" not in h, seen["ham_rescued"]

        # 2a. The user rescues both hams from Junk with MOVE -> learned as ham.
        _ok(imap.select("Junk"))
        _ok(imap.uid("MOVE", f"{seen['ham_flagged'][1]},{seen['ham_rescued'][1]}", "INBOX"))
        for name in ("ham_flagged", "ham_rescued"):
            assert find(imap, "Junk", ids[name]) is None and find(imap, "INBOX", ids[name]) is not None
        poll(lambda: stack.dump()["ham"] == TRAIN_EACH + 2, "the rescued hams to be learned", stack)
        # Exactly two hams more and no spam: the deliveries into Junk above (the milter's
        # verdict, the user's +Junk rule) were not learned, though the learner has run since.
        after_ham = stack.dump()
        assert after_ham == {"ham": TRAIN_EACH + 2, "spam": TRAIN_EACH,
                             "record_ham": TRAIN_EACH + 2, "record_spam": TRAIN_EACH}, after_ham
        assert learned_label(stack.model, msgs["ham_flagged"]) == "ham"
        assert learned_label(stack.model, msgs["ham_rescued"]) == "ham"
        assert learned_label(stack.model, msgs["spam_obvious"]) is None
        assert learned_label(stack.model, msgs["spam_sneaky"]) is None
        # The milter has loaded the model that knows the hams (it watches the model file).
        poll(lambda: stack.milter_loads() >= 2, "the milter to reload the model", stack)
        loads = stack.milter_loads()

        # 2b. The user files the sneaky spam as junk the way clients without MOVE do:
        #     COPY into Junk, then \Deleted + EXPUNGE in INBOX -> learned as spam.
        sneaky_uid = seen["spam_sneaky"][1]
        _ok(imap.select("INBOX"))
        _ok(imap.uid("COPY", str(sneaky_uid), "Junk"))
        _ok(imap.uid("STORE", str(sneaky_uid), "+FLAGS.SILENT", r"(\Deleted)"))
        _ok(imap.expunge())
        assert find(imap, "INBOX", ids["spam_sneaky"]) is None
        assert find(imap, "Junk", ids["spam_sneaky"]) is not None
        poll(lambda: stack.dump()["spam"] == TRAIN_EACH + 1, "the filed spam to be learned", stack)
        after_spam = stack.dump()
        assert after_spam == {"ham": TRAIN_EACH + 2, "spam": TRAIN_EACH + 1,
                              "record_ham": TRAIN_EACH + 2, "record_spam": TRAIN_EACH + 1}, after_spam
        assert learned_label(stack.model, msgs["spam_sneaky"]) == "spam"
        assert learned_label(stack.model, msgs["ham_flagged"]) == "ham"

        # 3. Once the milter reloaded the learner's save, the next similar messages are
        #    classified the way the user taught: near-duplicates sent again over SMTP.
        poll(lambda: stack.milter_loads() > loads, "the milter to reload the learned model", stack)
        stack.send(near_duplicate(msgs["spam_sneaky"]))
        stack.send(near_duplicate(msgs["ham_flagged"]))
        scores = {}
        for name in ("spam_sneaky", "ham_flagged"):
            first = spam_score(seen[name][2])
            folder, uid = arrived(imap, message_id(near_duplicate(msgs[name])), stack)
            h = header_of(imap, folder, uid)
            scores[name] = (first, spam_score(h), folder, h)
            print(f"{name}: X-Spam-Score {first} ({seen[name][0]}) before the user's correction, "
                  f"near-duplicate after: {spam_score(h)} ({folder})")
            assert h["X-Virus-Status"] == "Clean", h
        first, second, folder, h = scores["spam_sneaky"]
        assert second > first and second >= REQUIRED, scores["spam_sneaky"]
        assert folder == "Junk" and h.get("X-Spam-Flag") == "YES", scores["spam_sneaky"]
        first, second, folder, h = scores["ham_flagged"]
        assert second < first and second < REQUIRED, scores["ham_flagged"]
        assert folder == "INBOX" and "X-Spam-Flag" not in h, scores["ham_flagged"]
        imap.logout()
    finally:
        try:
            imap.shutdown()
        except OSError:
            pass
