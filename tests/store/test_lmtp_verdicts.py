"""Filing by verdict: one scan() seam writes the verdict (milter, `classify -p`), one reader
(mailsift.verdict.read_headers) files by it (LMTP). Over-size and clamd-limit mail is tagged as
not fully scanned and filed visibly so; forged verdicts from skipped clients are renamed;
address details never file into special folders, and into others only when enabled.

The pipeline tests run the real components: clamd, `mailsift milter`, Postfix and
`mailsift serve`, on loopback, stopped by PID."""

from __future__ import annotations

import random
import re
import subprocess
from pathlib import Path

import pytest

from harness.clamd import EICAR, ClamdInstance, available
from harness.postfix import make_workdir
from harness.procs import Daemon, unix_ready, wait_for
from lmtp_wire import LMTPWire
from mailsift.milter.scan import MessageScanner, StaticModels, scan
from mailsift.scanner.clamav import parse_reply
from mailsift.store.api import INBOX, Store
from mailsift.verdict import HeaderVerdict, Verdict, VirusResult, read_headers, verdict_headers

pytestmark = pytest.mark.integration

USER = "alice@example.test"


# -- one writer, one reader ------------------------------------------------------------------

VERDICTS = [
    Verdict(0.999, 9.2, clues=(("viagra", 2.0),), virus=VirusResult("clean")),
    Verdict(0.01, -2.5, virus=VirusResult("infected", name="Eicar-Test-Signature")),
    Verdict(0.7, 5.4, unsure=True, partial=True,
            virus=VirusResult("unscanned", reason="message over max_scan_size", partial=True)),
    Verdict(None, 0.0, reason="no model", virus=VirusResult("unscanned", reason="clamd unreachable")),
    Verdict(0.2, 1.0, virus=VirusResult("infected", name="Win.Test.EICAR_HDB-1", partial=True)),
    Verdict(0.3, 2.0, virus=VirusResult("unscanned", partial=True,
                                        reason="clamd limit: Heuristics.Limits.Exceeded.MaxFileSize")),
    Verdict(0.99, 8.0),
]


def expected(v: Verdict) -> HeaderVerdict:
    virus = v.virus
    return HeaderVerdict(
        spam=v.is_spam, score=None if v.probability is None else round(v.score, 1), unsure=v.unsure,
        partial_score=v.partial and v.probability is not None, virus=virus.state if virus else None,
        virus_name=virus.name if virus else None, virus_reason=virus.reason if virus else None,
        virus_partial=bool(virus and virus.partial))


@pytest.mark.parametrize("v", VERDICTS, ids=range(len(VERDICTS)))
@pytest.mark.parametrize("eol", [b"\r\n", b"\n"])
def test_headers_written_are_read_back_identically(v: Verdict, eol: bytes) -> None:
    head = verdict_headers(v).as_bytes().replace(b"\r\n", eol)
    raw = b"Received: from x" + eol + b"\tby y" + eol + head + b"Subject: s" + eol + eol + b"X-Spam-Flag: YES" + eol
    assert read_headers(raw) == expected(v)  # (the body's "X-Spam-Flag: YES" is not a header)


def test_untrusted_and_unknown_values_are_not_read() -> None:
    raw = (b"X-Spam-Flag-Untrusted: YES\r\nX-Virus-Status-Untrusted: Infected (x)\r\n"
           b"X-Virus-Status: whatever\r\n\r\n")
    assert read_headers(raw) == HeaderVerdict()


def test_clamd_limit_alert_is_unscanned_partial_not_infected() -> None:
    v = parse_reply(b"stream: Heuristics.Limits.Exceeded.MaxScanSize FOUND\0")
    assert v == VirusResult("unscanned", reason="clamd limit: Heuristics.Limits.Exceeded.MaxScanSize",
                            partial=True)
    assert dict(verdict_headers(Verdict(0.1, 0.0, virus=v)).headers)["X-Virus-Status"] == (
        "Unscanned (clamd limit: Heuristics.Limits.Exceeded.MaxScanSize) (partial scan)")


# -- a small trained model (the shared corpora are not needed) -------------------------------

SPAM_WORDS = "viagra cialis lottery winner prize claim offer cheap pills casino bonus refinance".split()
HAM_WORDS = "meeting agenda minutes project review budget schedule report deadline draft notes".split()


def _messages(words: list[str], n: int, seed: int) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rnd.choice(words) for _ in range(40))
        subject = " ".join(rnd.choice(words) for _ in range(4))
        out.append(f"From: p{i}@sender{seed}.test\r\nTo: {USER}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{seed}.{i}@sender.test>\r\n\r\n{body}\r\n".encode())
    return out


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mailsift.classifier.api import new_model, save_model

    dbpath = tmp_path_factory.mktemp("model")
    model = new_model()
    for h, s in zip(_messages(HAM_WORDS, 210, 1), _messages(SPAM_WORDS, 210, 2)):
        model.learn(h, "ham")
        model.learn(s, "spam")
    save_model(model, dbpath)
    dbpath.chmod(0o755)
    return dbpath


def lmtp_deliver(srv, data: bytes, rcpt: str = USER) -> str:
    c = LMTPWire(srv.lmtp_addr)
    try:
        c.cmd("LHLO test")
        rr, dr = c.transaction("s@remote.test", [rcpt], data)
        assert rr[0].code == 250 and len(dr) == 1, (rr, dr)
        return dr[0].text
    finally:
        c.close()


def test_classify_p_headers_file_by_the_same_reading(mailsift_bin: str, small_model: Path, store_server) -> None:
    from mailsift.classifier.api import load_model

    srv = store_server(users={USER: "pw"})
    scanner = MessageScanner(None, StaticModels(load_model(small_model)), virus_scan=False)
    for raw, folder in [(_messages(SPAM_WORDS, 1, 7)[0], "Junk"), (_messages(HAM_WORDS, 1, 8)[0], INBOX)]:
        p = subprocess.run([mailsift_bin, "classify", "-p", "--dbpath", str(small_model)], input=raw,
                           capture_output=True, timeout=120)
        assert p.returncode in (0, 1), p.stderr
        annotated = p.stdout
        # what classify -p wrote is what scan() decides, read back by the reader LMTP files by
        assert read_headers(annotated) == expected(scan(scanner, raw).verdict)
        reply = lmtp_deliver(srv, annotated)
        assert f"delivered to {folder} " in reply, reply
        assert (p.returncode == 0) == (folder == "Junk")


def test_classify_p_with_clamd_tags_viruses_and_lmtp_quarantines(mailsift_bin: str, small_model: Path,
                                                                  store_server, tmp_path: Path) -> None:
    if not available():
        pytest.skip("clamd, sigtool or clamav-testfiles not installed")
    wd = make_workdir("mailsift-classify-clamd-")
    clamd = ClamdInstance(wd / "clamd")
    try:
        clamd.start()
        srv = store_server(users={USER: "pw"})
        raw = _messages(HAM_WORDS, 1, 9)[0] + EICAR + b"\r\n"
        p = subprocess.run([mailsift_bin, "classify", "-p", "--dbpath", str(small_model), "--clamd", clamd.address],
                           input=raw, capture_output=True, timeout=120)
        assert p.returncode in (0, 1, 2), p.stderr
        found = read_headers(p.stdout)
        assert found.infected and found.virus_name and found.virus_name.startswith("Eicar"), p.stdout[:800]
        assert re.search(rb"(?m)^X-Virus-Scanned: mailsift \S+ \(clamd\)\r?$", p.stdout)
        assert "delivered to Quarantine " in lmtp_deliver(srv, p.stdout)
    finally:
        clamd.cleanup()
        import shutil
        shutil.rmtree(wd, ignore_errors=True)


# -- address details --------------------------------------------------------------------------

@pytest.mark.parametrize("enabled", [False, True])
def test_detail_never_files_into_special_folders(store_server, enabled: bool) -> None:
    srv = store_server(users={USER: "pw"}, **({"lmtp_detail_folders": True} if enabled else {}))  # off: the default
    box = Store(srv.mail_root).mailbox(USER)
    box.create_folder("Lists")
    box.create_folder("Archive", special_use="\\Archive")
    cases = {"sent": INBOX, "Junk": INBOX, "trash": INBOX, "drafts": INBOX, "Quarantine": INBOX,
             "archive": INBOX, "lists": "Lists" if enabled else INBOX, "nosuch": INBOX}
    for detail, folder in cases.items():
        reply = lmtp_deliver(srv, b"Subject: to +%s\r\n\r\nhello\r\n" % detail.encode(), f"alice+{detail}@example.test")
        assert f"delivered to {folder} uid" in reply, (detail, reply)
    box.sync()
    assert box.list("Sent") == [] and box.list("Junk") == [] and box.list("Trash") == []
    assert box.list("Drafts") == [] and box.list("Quarantine") == []


# -- through the whole pipeline: Postfix -> milter (+ clamd) -> LMTP -> store ----------------

@pytest.fixture
def pipeline(mailsift_bin: str, store_server, postfix_factory):
    """Start clamd, the milter (with a TOML written by the test) and Postfix delivering over
    LMTP to a `mailsift serve`: pipeline(milter_toml) -> (postfix, store server, milter daemon)."""
    if not available():
        pytest.skip("clamd, sigtool or clamav-testfiles not installed")
    made: list = []
    dirs = []

    def start(milter_toml: str):
        wd = make_workdir("mailsift-verdicts-")
        dirs.append(wd)
        clamd = ClamdInstance(wd / "clamd")
        made.append(clamd)
        clamd.start()
        srv = store_server(users={USER: "pw"})
        conf = wd / "mailsift.toml"
        conf.write_text(milter_toml)
        sock = wd / "milter" / "milter.sock"
        milter = Daemon([mailsift_bin, "milter", "--config", str(conf), "--socket", f"unix:{sock}",
                         "--clamd", clamd.address, "--dbpath", str(wd / "nomodel")], wd / "milter.log").start()
        made.append(milter)
        milter.wait_ready(lambda: unix_ready(sock), 30, what="milter socket")
        pf = postfix_factory(main={
            "smtpd_milters": f"unix:{sock}", "non_smtpd_milters": "", "milter_default_action": "tempfail",
            "milter_protocol": "6",
            "virtual_transport": f"lmtp:inet:{srv.lmtp_addr[0]}:{srv.lmtp_addr[1]}",
            "virtual_mailbox_domains": "example.test", "virtual_mailbox_maps": "static:OK",
        })
        return pf, srv, milter

    yield start
    for thing in reversed(made):
        if isinstance(thing, ClamdInstance):
            thing.cleanup()
        else:
            thing.stop()
    import shutil
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


def delivered(srv, n: int, timeout: float = 60) -> list[tuple[str, bytes]]:
    """The first n messages in the user's folders: (folder, bytes)."""
    box = Store(srv.mail_root).mailbox(USER)

    def found():
        box.sync()
        got = [(f, box.read(f, m.uid)) for f in (INBOX, "Junk", "Quarantine") for m in box.list(f)]
        return got if len(got) >= n else None
    return wait_for(found, timeout, what=f"{n} messages in the store")


def test_oversize_mail_is_unscanned_and_filed_visibly(pipeline) -> None:
    pf, srv, milter = pipeline("[milter]\nmax_scan_size = 4096\n")
    filler = "lorem ipsum dolor sit amet\r\n" * 400
    big = (f"From: s@outside.test\r\nTo: {USER}\r\nSubject: big\r\n\r\n{filler}").encode() + EICAR + b"\r\n"
    pf.send("s@outside.test", [USER], big)
    [(folder, data)] = delivered(srv, 1)
    found = read_headers(data)
    assert found.virus == "unscanned" and found.virus_partial and not found.fully_scanned, data[:1500]
    assert re.search(rb"\nX-Virus-Status: Unscanned \(message over max_scan_size\) \(partial scan\)\r\n", data)
    assert folder == INBOX
    assert "not fully virus-scanned: message over max_scan_size" in srv.log()
    wait_for(lambda: "not fully virus-scanned" in pf.log_text(), 30, what="the LMTP reply in Postfix's log")


def test_forged_verdict_from_a_skipped_network_is_renamed(pipeline) -> None:
    pf, srv, milter = pipeline('[milter]\nskip_networks = ["127.0.0.0/8"]\n')
    forged = (f"From: s@outside.test\r\nTo: {USER}\r\nSubject: trusted\r\nX-Spam-Flag: YES\r\n"
              f"X-Virus-Status: Infected (Fake)\r\n\r\nhello\r\n").encode()
    pf.send("s@outside.test", [USER], forged)
    [(folder, data)] = delivered(srv, 1)
    assert folder == INBOX, data[:800]
    assert b"\nX-Spam-Flag-Untrusted: YES\r\n" in data and b"\nX-Virus-Status-Untrusted: Infected (Fake)\r\n" in data
    assert not re.search(rb"(?m)^X-Spam-Flag:", data) and not re.search(rb"(?m)^X-Virus-Status:", data)
    assert "verdict=skipped" in milter.log()
