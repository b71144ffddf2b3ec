"""The milter's parts without Postfix: clamd client, the pymilter class on a fake context,
model reloading, postconf lines, settings."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from pathlib import Path

import Milter
import pytest

from harness.clamd import EICAR
from mailsift.config import ConfigError, parse_config
from mailsift.daemon import parse_networks
from mailsift.milter.app import ClientAwareMilter, MailsiftMilter, Runtime, milter_class, milter_value
from mailsift.milter.postfix import postconf_lines, postfix_milter_address
from mailsift.milter.reload import ModelHolder
from mailsift.milter.scan import MessageScanner
from mailsift.milter.settings import MilterSettings
from mailsift.scanner.clamav import ClamdClient, ScanError, parse_address, parse_reply
from mailsift.verdict import Verdict, VirusResult


# -- clamd client --------------------------------------------------------------------------
def test_parse_address() -> None:
    assert str(parse_address("unix:/run/clamd.ctl")) == "unix:/run/clamd.ctl"
    assert parse_address("/run/clamd.ctl").family == socket.AF_UNIX
    a = parse_address("127.0.0.1:3310")
    assert a.family == socket.AF_INET and a.target == ("127.0.0.1", 3310)
    assert parse_address("[::1]:3310").family == socket.AF_INET6
    for bad in ("unix:", "localhost", "host:port"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_parse_reply() -> None:
    assert parse_reply(b"stream: OK\0").state == "clean"
    assert parse_reply(b"fd[11]: OK\0") == parse_reply(b"stream: OK\0") == VirusResult("clean")
    odd = parse_reply(b"fd[11]: Odd.Name: OK FOUND\0")
    assert odd.state == "infected" and odd.name == "Odd.Name: OK"
    r = parse_reply(b"stream: Eicar-Test-Signature FOUND\0")
    assert r.state == "infected" and r.name == "Eicar-Test-Signature"
    with pytest.raises(ScanError) as exc:
        parse_reply(b"INSTREAM size limit exceeded. ERROR\0")
    assert exc.value.reason == "clamd error" and "size limit" in str(exc.value)
    with pytest.raises(ScanError):
        parse_reply(b"garbage\0")


def test_unreachable_clamd_is_a_scan_error(tmp_path: Path) -> None:
    client = ClamdClient(f"unix:{tmp_path / 'none.sock'}", timeout=2)
    with pytest.raises(ScanError) as exc:
        client.scan_bytes(b"hello")
    assert exc.value.reason == "clamd unreachable"
    assert client.ping() is False


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_silent_clamd_times_out(family: str, tmp_path: Path) -> None:
    """A clamd that accepts and never answers costs at most the timeout (TCP: Python's socket
    timeouts; unix: the kernel's SO_RCVTIMEO on a blocking socket)."""
    if family == "tcp":
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{server.getsockname()[1]}"
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(tmp_path / "silent.sock"))
        address = f"unix:{tmp_path / 'silent.sock'}"
    server.listen(4)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except OSError:
                continue

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        client = ClamdClient(address, timeout=0.5)
        for pass_fd in (True, False):
            client.pass_fd = pass_fd and family == "unix"
            t0 = time.monotonic()
            with pytest.raises(ScanError) as exc:
                client.scan_bytes(b"x" * 1000)
            assert exc.value.reason == "clamd timeout"
            assert 0.4 < time.monotonic() - t0 < 3
    finally:
        stop.set()
        t.join()
        for c in accepted:
            c.close()
        server.close()


def test_real_clamd_over_unix_and_tcp(clamd) -> None:
    assert ClamdClient(clamd.address).pass_fd and not ClamdClient(clamd.tcp).pass_fd
    for addr, pass_fd in ((clamd.address, True), (clamd.address, False), (clamd.tcp, True)):
        client = ClamdClient(addr, timeout=10, pass_fd=pass_fd)
        assert client.ping()
        assert client.scan_bytes(b"just text\r\n").state == "clean"
        found = client.scan_bytes(b"prefix " + EICAR + b" suffix")
        assert found.state == "infected" and found.name.startswith("Eicar-Test-Signature")
        big = b"A" * (3 * 64 * 1024 + 17) + EICAR  # several INSTREAM chunks
        assert client.scan_bytes(big).state == "infected"


def test_scans_in_flight_together_answer_each_for_its_own_message(clamd) -> None:
    """start() hands the message over and returns; the answers are read later, in any order
    (the milter scores while clamd scans)."""
    for addr, pass_fd in ((clamd.address, True), (clamd.address, False), (clamd.tcp, True)):
        client = ClamdClient(addr, timeout=10, pass_fd=pass_fd)
        pending = [client.start(b"clean text %d\r\n" % i) for i in range(3)]
        infected = client.start(b"x " + EICAR + b" y")
        assert infected.result().state == "infected"
        assert [p.result().state for p in reversed(pending)] == ["clean"] * 3
        with pytest.raises(RuntimeError):
            infected.result()  # one answer per request


def test_virus_async_reports_an_unreachable_clamd_when_asked(tmp_path: Path) -> None:
    scanner = MessageScanner(ClamdClient(f"unix:{tmp_path / 'none.sock'}", timeout=2), ModelHolder(tmp_path))
    finish = scanner.virus_async(b"hello", partial=False)
    virus, error = finish()
    assert virus.state == "unscanned" and virus.reason == "clamd unreachable" and error


def test_a_clamd_that_refuses_fildes_is_asked_with_instream(tmp_path: Path) -> None:
    path = tmp_path / "fake.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(4)
    commands: list[bytes] = []

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                data = conn.recv(65536)
                commands.append(data[:10])
                if data.startswith(b"zFILDES"):
                    while len(data) < len(b"zFILDES\0") + 1:  # the command, then the byte carrying the fd
                        data += conn.recv(65536)
                    conn.sendall(b"FILDES: command not supported. ERROR\0")
                else:
                    while not data.endswith(b"\0\0\0\0"):
                        data += conn.recv(65536)
                    conn.sendall(b"stream: OK\0")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    client = ClamdClient(f"unix:{path}", timeout=5)
    assert client.scan_bytes(b"hello").state == "clean"
    assert client.pass_fd is False
    t.join(5)
    server.close()
    assert commands[0].startswith(b"zFILDES") and commands[1].startswith(b"zINSTREAM")


# -- the pymilter class on a fake libmilter context -----------------------------------------
class FakeCtx:
    def __init__(self, macros: dict[str, str] | None = None) -> None:
        self.macros = macros or {"i": "ABC123"}
        self.calls: list[tuple] = []
        self.priv = None

    def setpriv(self, priv) -> None:
        self.priv = priv

    def getpriv(self):
        return self.priv

    def getsymval(self, name: str):
        return self.macros.get(name)

    def setreply(self, *args) -> int:
        self.calls.append(("setreply", *args))
        return Milter.SUCCESS

    def addheader(self, name, value, idx) -> int:
        self.calls.append(("addheader", name, value))
        return Milter.SUCCESS

    def chgheader(self, name, idx, value) -> int:
        self.calls.append(("chgheader", name, idx, value))
        return Milter.SUCCESS

    def quarantine(self, reason) -> int:
        self.calls.append(("quarantine", reason))
        return Milter.SUCCESS


class FakeScanner:
    def __init__(self, virus: VirusResult = VirusResult("clean"), error: str | None = None,
                 verdict: Verdict | None = None, boom: bool = False) -> None:
        self._virus, self._error, self._verdict, self.boom = virus, error, verdict, boom
        self.seen: list[bytes] = []
        self.partial: list[bool] = []

    def virus(self, raw: bytes, partial: bool):
        self.seen.append(raw)
        self.partial.append(partial)
        return self._virus, self._error

    def virus_async(self, raw: bytes, partial: bool):
        result = self.virus(raw, partial)
        return lambda: result

    def score(self, raw: bytes, partial: bool) -> Verdict:
        if self.boom:
            raise ZeroDivisionError("model exploded")
        return self._verdict or Verdict(0.999, 9.0, clues=(("viagra", 2.0), ("meeting", -1.0)))


def run_message(scanner, headers, body: bytes, settings: MilterSettings | None = None, macros=None):
    ctx = FakeCtx(macros)
    settings = settings or MilterSettings()
    runtime = Runtime(settings, scanner, skip_networks=parse_networks(settings.skip_networks))
    m = milter_class(runtime)(runtime)
    m._setctx(ctx)
    assert m.connect("client", socket.AF_INET, ("192.0.2.7", 2525)) == Milter.CONTINUE
    m.envfrom("<a@b.test>")
    m.envrcpt("<c@example.test>")
    for name, value in headers:
        m.header(name, value)
    m.eoh()
    m.body(body)
    return m.eom(), ctx


def test_spam_gets_headers_and_the_raw_message_is_rebuilt() -> None:
    scanner = FakeScanner()
    rc, ctx = run_message(scanner, [(b"Subject", b"hi"), (b"Received", b"from x\n\tby y")], b"body\r\n")
    assert rc == Milter.CONTINUE
    added = [(c[1], c[2]) for c in ctx.calls if c[0] == "addheader"]
    names = [n for n, _ in added]
    assert names == ["X-Spam-Flag", "X-Spam-Score", "X-Spam-Level", "X-Spam-Status", "X-Spam-Report",
                     "X-Virus-Scanned", "X-Virus-Status"]
    report = dict(added)["X-Spam-Report"]
    assert "\r" not in report and "\n\t" in report  # libmilter folding: LF + tab
    assert scanner.seen[0] == b"Subject: hi\r\nReceived: from x\r\n\tby y\r\n\r\nbody\r\n"


def test_incoming_verdict_headers_are_renamed_from_the_last_backwards() -> None:
    headers = [(b"X-Spam-Flag", b"NO"), (b"Subject", b"s"), (b"x-spam-flag", b"YES"),
               (b"X-Virus-Status", b"Clean"), (b"X-Spam-Flag-Untrusted", b"old")]
    rc, ctx = run_message(FakeScanner(), headers, b"b\r\n")
    assert rc == Milter.CONTINUE
    chg = [c for c in ctx.calls if c[0] == "chgheader"]
    assert chg == [("chgheader", "X-Virus-Status", 1, None), ("chgheader", "x-spam-flag", 2, None),
                   ("chgheader", "X-Spam-Flag", 1, None)]
    added = [(c[1], c[2]) for c in ctx.calls if c[0] == "addheader"]
    assert ("X-Spam-Flag-Untrusted", "NO") in added and ("x-spam-flag-Untrusted", "YES") in added
    assert ("X-Virus-Status-Untrusted", "Clean") in added


def test_unexpected_exception_is_a_tempfail_with_a_logged_traceback(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="mailsift.milter")
    rc, ctx = run_message(FakeScanner(boom=True), [(b"Subject", b"x")], b"b\r\n")
    assert rc == Milter.TEMPFAIL
    assert ("setreply", "451", "4.3.0", "Temporary content filter failure, try again later") in ctx.calls
    assert not [c for c in ctx.calls if c[0] == "addheader"]
    assert "ZeroDivisionError: model exploded" in caplog.text and "Traceback" in caplog.text


def test_failure_in_an_early_callback_tempfails_at_end_of_message(caplog) -> None:
    ctx = FakeCtx()
    m = MailsiftMilter(Runtime(MilterSettings(), FakeScanner()))
    m._setctx(ctx)
    m.connect("client", socket.AF_INET, ("192.0.2.7", 2525))
    m.envfrom("<a@b.test>")
    assert m.header(None, b"v") == Milter.CONTINUE  # a bad callback argument must not hang Postfix
    m.eoh()
    assert m.eom() == Milter.TEMPFAIL


def test_scan_error_policy() -> None:
    err = (VirusResult("unscanned", reason="clamd timeout"), "clamd at x timed out")
    rc, ctx = run_message(FakeScanner(*err), [(b"Subject", b"x")], b"b\r\n")
    assert rc == Milter.TEMPFAIL and ctx.calls[0][:3] == ("setreply", "451", "4.7.1")
    rc, ctx = run_message(FakeScanner(*err), [(b"Subject", b"x")], b"b\r\n",
                          MilterSettings(on_scan_error="accept"))
    assert rc == Milter.CONTINUE
    assert ("addheader", "X-Virus-Status", "Unscanned (clamd timeout)") in ctx.calls


def test_virus_actions() -> None:
    infected = VirusResult("infected", name="Eicar-Test-Signature")
    rc, ctx = run_message(FakeScanner(infected), [], b"b\r\n", MilterSettings(on_virus="reject"))
    assert rc == Milter.REJECT and ctx.calls[0][:3] == ("setreply", "554", "5.7.1")
    rc, ctx = run_message(FakeScanner(infected), [], b"b\r\n", MilterSettings(on_virus="hold"))
    assert rc == Milter.CONTINUE and ("quarantine", "mailsift: virus Eicar-Test-Signature") in ctx.calls
    rc, ctx = run_message(FakeScanner(infected), [], b"b\r\n", MilterSettings(on_virus="tag"))
    assert rc == Milter.CONTINUE and not [c for c in ctx.calls if c[0] == "quarantine"]
    assert ("addheader", "X-Virus-Status", "Infected (Eicar-Test-Signature)") in ctx.calls


def test_skip_authenticated_and_max_scan_size() -> None:
    scanner = FakeScanner()
    rc, ctx = run_message(scanner, [], b"b\r\n", MilterSettings(skip_authenticated=True),
                          macros={"i": "Q1", "{auth_authen}": "alice"})
    assert rc == Milter.ACCEPT and ctx.calls == [] and scanner.seen == []
    rc, ctx = run_message(scanner, [(b"Subject", b"big")], b"x" * 5000, MilterSettings(max_scan_size=1000))
    assert len(scanner.seen[-1]) == 1000 and scanner.partial[-1] is True
    rc, ctx = run_message(scanner, [(b"Subject", b"small")], b"x" * 500, MilterSettings(max_scan_size=1000))
    assert scanner.partial[-1] is False


def test_message_scanner_marks_partial_scans(clamd, tmp_path: Path) -> None:
    holder = ModelHolder(tmp_path)
    holder.check()
    out = MessageScanner(ClamdClient(clamd.address), holder).scan(b"Subject: x\r\n\r\nhi\r\n", partial=True)
    # clamd saw only the start: not a clean bill of health
    assert out.verdict.virus == VirusResult("unscanned", reason="message over max_scan_size", partial=True)
    assert out.verdict.partial


def test_log_line_is_one_line_even_for_a_folded_message_id(caplog) -> None:
    caplog.set_level(logging.INFO, logger="mailsift.milter")
    run_message(FakeScanner(), [(b"Message-ID", b"<a\r\n\tb@c>\x00")], b"b\r\n", macros={"i": "QID1"})
    lines = [r.getMessage() for r in caplog.records if "queue_id=QID1" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and "message_id=<ab@c> " in lines[0]
    assert "verdict=spam score=9.0 virus=clean action=accept" in lines[0]


def test_skip_networks_by_client_address() -> None:
    settings = MilterSettings(skip_networks=("192.0.2.0/24", "2001:db8::/32"))
    for family, addr, skipped in ((socket.AF_INET, "192.0.2.7", True), (socket.AF_INET, "198.51.100.1", False),
                                  (socket.AF_INET6, "2001:db8::5", True), (socket.AF_INET6, "2001:db9::5", False),
                                  (socket.AF_UNIX, "", False)):
        scanner = FakeScanner()
        runtime = Runtime(settings, scanner, skip_networks=parse_networks(settings.skip_networks))
        m = milter_class(runtime)(runtime)
        m._setctx(FakeCtx())
        m.connect("client", family, (addr, 2525) if addr else None)
        m.envfrom("<a@b.test>")
        m.header(b"Subject", b"x")
        m.body(b"b\r\n")
        assert (m.eom() == Milter.ACCEPT) is skipped, addr
        assert (scanner.seen == []) is skipped, addr


OFFERED = 0x1FFFFF  # every protocol step an MTA can offer to skip or not wait for


def test_only_the_content_callbacks_are_asked_for() -> None:
    """Without skip rules Postfix sends nothing before the headers: connect, HELO, MAIL, RCPT,
    DATA and EOH are negotiated away; headers and body need no reply."""
    runtime = Runtime(MilterSettings(), FakeScanner())
    assert milter_class(runtime) is MailsiftMilter
    negotiated = OFFERED & ~MailsiftMilter.protocol_mask()  # what pymilter's negotiate() answers
    for bit in (Milter.P_NOCONNECT, Milter.P_NOHELO, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NODATA,
                Milter.P_NOEOH, Milter.P_NOUNKNOWN, Milter.P_NR_HDR, Milter.P_NR_BODY):
        assert negotiated & bit, hex(bit)
    assert not negotiated & (Milter.P_NOHDRS | Milter.P_NOBODY)


def test_skip_rules_ask_for_connect_and_mail_without_replies() -> None:
    for settings in (MilterSettings(skip_authenticated=True), MilterSettings(skip_networks=("10.0.0.0/8",))):
        runtime = Runtime(settings, FakeScanner(), skip_networks=parse_networks(settings.skip_networks))
        cls = milter_class(runtime)
        negotiated = OFFERED & ~cls.protocol_mask()
        assert cls is ClientAwareMilter
        assert not negotiated & (Milter.P_NOCONNECT | Milter.P_NOMAIL)
        assert negotiated & Milter.P_NR_CONN and negotiated & Milter.P_NR_MAIL and negotiated & Milter.P_NORCPT


class SymlistCtx(FakeCtx):
    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.symlists: dict[int, str] = {}
        self.fail = fail

    def setsymlist(self, stage: int, macros: str) -> int:
        if self.fail:
            raise Milter.milter.error("cannot set symlist")
        assert isinstance(macros, str)  # pymilter's C side takes str (its Base.setsymlist passes bytes)
        self.symlists[stage] = macros
        return Milter.SUCCESS


def negotiate(cls, ctx: FakeCtx, settings: MilterSettings | None = None) -> tuple[int, list[int]]:
    settings = settings or MilterSettings()
    runtime = Runtime(settings, FakeScanner(), skip_networks=parse_networks(settings.skip_networks))
    m = cls(runtime)
    m._setctx(ctx)
    opts = [Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE | Milter.SETSYMLIST, OFFERED, 0, 0]
    return m.negotiate(opts), opts


def test_negotiation_names_the_only_macros_read() -> None:
    """The queue id at end-of-message is all the lean milter reads: naming it makes Postfix
    send no macros at the other stages (it sends them even for stages the milter skips)."""
    ctx = SymlistCtx()
    rc, opts = negotiate(MailsiftMilter, ctx)
    assert rc == Milter.CONTINUE
    assert ctx.symlists == {Milter.M_EOM: "i"}
    assert opts[1] == OFFERED & ~MailsiftMilter.protocol_mask()
    ctx = SymlistCtx()
    rc, _ = negotiate(ClientAwareMilter, ctx, MilterSettings(skip_authenticated=True))
    assert rc == Milter.CONTINUE
    assert ctx.symlists == {Milter.M_EOM: "i", Milter.M_ENVFROM: "{auth_authen}"}


def test_a_failed_negotiation_is_logged_and_asks_for_everything(caplog) -> None:
    caplog.set_level(logging.ERROR, logger="mailsift.milter")
    rc, _ = negotiate(MailsiftMilter, SymlistCtx(fail=True))
    assert rc == Milter.ALL_OPTS
    assert any("negotiation failed" in r.getMessage() for r in caplog.records)


def test_messages_on_one_connection_do_not_share_state() -> None:
    scanner = FakeScanner()
    ctx = FakeCtx()
    m = MailsiftMilter(Runtime(MilterSettings(), scanner))
    m._setctx(ctx)
    m.header(b"Subject", b"first")
    m.body(b"one\r\n")
    assert m.eom() == Milter.CONTINUE
    m.header(b"Subject", b"aborted")  # the client gives up mid-message
    assert m.abort() == Milter.CONTINUE
    m.header(b"Subject", b"third")
    m.body(b"three\r\n")
    assert m.eom() == Milter.CONTINUE
    assert scanner.seen == [b"Subject: first\r\n\r\none\r\n", b"Subject: third\r\n\r\nthree\r\n"]


def test_milter_value() -> None:
    assert milter_value("a\r\n\tb") == "a\n\tb"


# -- model reloading ------------------------------------------------------------------------
def test_model_holder_reloads_on_atomic_rename_and_survives_a_broken_file(tmp_path: Path) -> None:
    from mailsift.classifier.api import MODEL_FILE

    loads: list[str] = []

    def loader(path: Path) -> str:
        text = path.read_text()
        if text == "broken":
            raise ValueError("bad model")
        loads.append(text)
        return text

    holder = ModelHolder(tmp_path, interval=0.05, loader=loader)
    holder.check()
    assert holder.current() == (None, "no model")

    def publish(text: str) -> None:
        tmp = tmp_path / "tmp.new"
        tmp.write_text(text)
        tmp.rename(tmp_path / MODEL_FILE)

    holder.start()
    try:
        publish("v1")
        from harness.procs import wait_for
        wait_for(lambda: holder.current()[0] == "v1", 5, what="v1")
        publish("broken")
        time.sleep(0.3)  # several intervals: the broken file is tried once, v1 stays
        assert holder.current()[0] == "v1"
        publish("v2")
        wait_for(lambda: holder.current()[0] == "v2", 5, what="v2")
        assert loads == ["v1", "v2"]
    finally:
        holder.stop()


def test_model_holder_loads_a_model_caught_between_its_two_renames(tmp_path: Path, trained_dbpath: Path,
                                                                  corpora: Path) -> None:
    """A writer (save_model: the share installer, a learner) renames the model file, then its
    sidecar. A check between the two refuses the pair; the next one, once the sidecar is renamed
    too, loads the new model (not only when the model file changes again)."""
    import shutil

    from mailsift.classifier.api import MODEL_FILE, SIDECAR_FILE, load_model, save_model

    d = shutil.copytree(trained_dbpath, tmp_path / "models")
    holder = ModelHolder(d)
    assert holder.check() and holder.current()[0].n_spam_ == load_model(d).n_spam_
    before = holder.current()[0].n_spam_
    newer = load_model(d)
    newer.learn(sorted((corpora / "spamassassin/spam_2").iterdir())[0].read_bytes(), "spam")
    save_model(newer, tmp_path / "next")
    shutil.copy(tmp_path / "next" / MODEL_FILE, d / "model.new")
    (d / "model.new").rename(d / MODEL_FILE)  # the writer is between its two renames here
    assert not holder.check()  # refused: the model file does not match the old sidecar
    assert holder.current()[0].n_spam_ == before
    (tmp_path / "next" / SIDECAR_FILE).rename(d / SIDECAR_FILE)
    assert holder.check()
    assert holder.current()[0].n_spam_ == before + 1


def test_message_scanner_without_a_model(tmp_path: Path) -> None:
    holder = ModelHolder(tmp_path)
    holder.check()
    out = MessageScanner(None, holder).scan(b"Subject: x\r\n\r\nhi\r\n")
    assert out.verdict.probability is None and out.verdict.reason == "no model"
    assert out.verdict.virus.state == "unscanned"


# -- configuration and postconf ---------------------------------------------------------------
def test_postconf_lines() -> None:
    from mailsift.config import Config

    assert postfix_milter_address("unix:/var/spool/postfix/mailsift/milter.sock") == "unix:/mailsift/milter.sock"
    assert postfix_milter_address("inet:8891@127.0.0.1") == "inet:127.0.0.1:8891"
    lines = postconf_lines(Config())
    assert "postconf -e 'smtpd_milters = unix:/mailsift/milter.sock'" in lines
    assert "postconf -e 'milter_default_action = tempfail'" in lines
    assert any("{auth_authen}" in line for line in lines)


def test_postfix_config_command(mailsift_bin: str) -> None:
    out = subprocess.run([mailsift_bin, "postfix-config", "--part", "milter"], capture_output=True,
                         text=True, check=True).stdout
    assert "milter_default_action = tempfail" in out and "smtpd_milters = unix:/mailsift/milter.sock" in out


def test_settings_are_validated() -> None:
    for bad in ({"on_virus": "discard"}, {"on_scan_error": "reject"}, {"max_scan_size": 0},
                {"skip_networks": ["not-a-net"]}, {"socket_mode": "999"}, {"socket": "tcp:1"}):
        with pytest.raises(ConfigError):
            parse_config({"milter": bad})
    cfg = parse_config({"milter": {"on_virus": "hold", "skip_networks": ["10.0.0.0/8"]}})
    assert cfg.milter.on_virus == "hold"


def test_bad_flag_value_is_a_clear_error(mailsift_bin: str, tmp_path: Path) -> None:
    res = subprocess.run([mailsift_bin, "milter", "--socket", f"unix:{tmp_path}/m.sock", "--clamd", "nonsense"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 3 and "clamd address" in res.stderr


def test_sigterm_stops_the_milter_cleanly(mailsift_bin: str, tmp_path: Path) -> None:
    from harness.procs import Daemon, unix_ready, wait_for

    sock = tmp_path / "run" / "milter.sock"
    d = Daemon([mailsift_bin, "milter", "--socket", f"unix:{sock}", "--clamd", f"unix:{tmp_path}/none.sock",
                "--dbpath", str(tmp_path / "models")], tmp_path / "milter.log").start()
    try:
        wait_for(lambda: unix_ready(sock), 30, what="milter socket")
        assert oct(sock.stat().st_mode & 0o777) == oct(0o660)
        d.proc.send_signal(15)
        assert d.proc.wait(30) == 0, d.log()
        assert not sock.exists()
        assert "mailsift milter stopped" in d.log()
    finally:
        d.stop()


def test_the_venv_links_libmilter_without_the_worker_pool() -> None:
    """`make venv` links pymilter against deploy/build-libmilter.sh's libmilter (no worker
    pool); the same probe finds the pool in Debian's shared libmilter, and nothing in a
    library without libmilter."""
    from mailsift.milter.libmilter import worker_pool_linked

    assert worker_pool_linked() is False
    assert worker_pool_linked("libmilter.so.1.0.1") is True
    assert worker_pool_linked("libz.so.1") is None


def test_cpus_setting_chooses_one_cpu_unless_told_otherwise() -> None:
    from mailsift.milter.affinity import choose_cpus, parse_cpus

    four = frozenset({0, 1, 2, 3})
    assert choose_cpus("auto", four) == {3}
    assert choose_cpus("auto", frozenset({0, 5})) == {5}
    assert choose_cpus("auto", frozenset({2})) is None  # one CPU: nothing to choose
    assert choose_cpus("auto", four, score_workers=2) is None  # the workers inherit the mask
    assert choose_cpus("all", four) is None
    assert choose_cpus("1", four) == {1}
    assert choose_cpus(" 2,3 ", four) == {2, 3}
    with pytest.raises(ValueError, match="may only run on CPUs 0,1,2,3"):
        choose_cpus("7", four)
    for bad in ("", "one", "1-3", "-1", "1,,2"):
        with pytest.raises(ValueError, match="expected auto, all or CPU numbers"):
            parse_cpus(bad)


def test_spare_cpus_are_those_the_milter_keeps_off() -> None:
    from mailsift.milter.affinity import spare_cpus

    four = frozenset({0, 1, 2, 3})
    assert spare_cpus(four, frozenset({3})) == {0, 1, 2}  # the share installer's CPUs
    assert spare_cpus(four, frozenset({2, 3})) == {0, 1}
    assert spare_cpus(four, None) is None  # not pinned: the installer runs anywhere
    assert spare_cpus(frozenset({1}), frozenset({1})) is None  # nothing spare: it shares the CPU


def test_cpus_setting_is_checked_when_the_config_is_read(tmp_path) -> None:
    from mailsift.config import ConfigError, load_config

    cfg = tmp_path / "m.toml"
    cfg.write_text('[milter]\ncpus = "0,x"\n')
    with pytest.raises(ConfigError, match=r"\[milter\]: cpus '0,x'"):
        load_config(cfg)
    cfg.write_text("[milter]\ncpus = 1\n")
    with pytest.raises(ConfigError, match="expected a string"):
        load_config(cfg)
    cfg.write_text('[milter]\ncpus = "all"\n')
    assert load_config(cfg).milter.cpus == "all"


def test_end_of_message_goes_through_the_one_scan_seam(monkeypatch) -> None:
    """The milter's end-of-message calls mailsift.milter.scan.scan (as `classify -p` does)."""
    from mailsift.milter import app as milter_app

    calls = []
    real = milter_app.scan

    def spy(scanner, raw, partial=False):
        calls.append((raw, partial))
        return real(scanner, raw, partial)

    monkeypatch.setattr(milter_app, "scan", spy)
    rc, ctx = run_message(FakeScanner(), [(b"Subject", b"hi")], b"body\r\n")
    assert rc == Milter.CONTINUE
    assert calls == [(b"Subject: hi\r\n\r\nbody\r\n", False)]
    added = dict((c[1], c[2]) for c in ctx.calls if c[0] == "addheader")
    assert added["X-Spam-Flag"] == "YES" and added["X-Virus-Status"] == "Clean"


def test_skipped_mail_still_has_forged_verdicts_renamed() -> None:
    settings = MilterSettings(skip_authenticated=True)
    scanner = FakeScanner()
    rc, ctx = run_message(scanner, [(b"Subject", b"hi"), (b"X-Spam-Flag", b"YES")], b"b\r\n", settings,
                          macros={"{auth_authen}": "demo"})
    assert rc == Milter.ACCEPT and scanner.seen == []
    assert ("chgheader", "X-Spam-Flag", 1, None) in [tuple(c) for c in ctx.calls]
    assert [c for c in ctx.calls if c[0] == "addheader"] == [("addheader", "X-Spam-Flag-Untrusted", "YES")]
