"""Crash test: 1,000 messages from Postfix over LMTP while `mailsift serve` is killed -9 twice.

Afterwards every message is in the store exactly once (or still queued, and it arrives after the
restart); no half-written file sits in new/ or cur/; UIDs are unique and ascending."""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import threading

import pytest

from harness.postfix import PostfixInstance, make_workdir
from harness.procs import wait_for
from mailsift.store.api import INBOX, Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL = 1000
SENDERS = 4
USER = "alice@example.test"
BODY = b"".join(b"line %d of a message body that is long enough to take a moment to write\r\n" % i
                for i in range(40))


def message(seq: int) -> bytes:
    return (b"From: load@remote.test\r\nTo: alice@example.test\r\nSubject: crash test %d\r\n"
            b"X-Seq: %d\r\n\r\n" % (seq, seq)) + BODY + b"END-OF-MESSAGE %d\r\n" % seq


def count_files(maildir) -> int:
    return sum(len(os.listdir(maildir / sub)) for sub in ("new", "cur"))


def test_kill9_twice_during_1000_deliveries(store_server) -> None:
    srv = store_server(users={USER: "pw"}, lmtp="tcp")
    wd = make_workdir("mailsift-crash-")
    pf = PostfixInstance(wd, main={
        "virtual_transport": f"lmtp:inet:{srv.lmtp_addr[0]}:{srv.lmtp_addr[1]}",
        "virtual_mailbox_domains": "example.test",
        "virtual_mailbox_maps": "static:OK",
        "lmtp_destination_concurrency_limit": "20",
        "lmtp_destination_recipient_limit": "50",
        "default_destination_concurrency_failed_cohort_limit": "100",
    })
    maildir = srv.maildir(USER)
    errors: list[BaseException] = []
    try:
        pf.start()

        def submit(part: int) -> None:
            try:
                with smtplib.SMTP(pf.host, pf.smtp_port, timeout=120) as smtp:
                    for seq in range(part, TOTAL, SENDERS):
                        smtp.sendmail("load@remote.test", [USER], message(seq))
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=submit, args=(p,)) for p in range(SENDERS)]
        for t in threads:
            t.start()
        kills = 0
        for threshold in (TOTAL // 5, TOTAL // 2):
            wait_for(lambda: count_files(maildir) >= threshold, 180, what=f"{threshold} deliveries")
            refused_before = pf.log_text().count("Connection refused")
            srv.kill9()
            kills += 1
            try:  # let Postfix meet the dead peer, so some mail is deferred and must be retried
                wait_for(lambda: pf.log_text().count("Connection refused") > refused_before, 10,
                         what="postfix to notice the dead LMTP server")
            except TimeoutError:
                pass
            # a half-written file may exist in tmp/, never in new/ or cur/
            for sub in ("new", "cur"):
                for name in os.listdir(maildir / sub):
                    data = (maildir / sub / name).read_bytes()
                    assert re.search(rb"END-OF-MESSAGE \d+\n$", data), f"incomplete file {sub}/{name}"
            srv.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        assert kills == 2

        def all_in() -> bool:
            if count_files(maildir) >= TOTAL and not pf.queue():
                return True
            pf.flush()
            return False

        try:
            wait_for(all_in, 240, interval=1.0, what="every message delivered after the restarts")
        except TimeoutError:
            raise AssertionError(f"{count_files(maildir)} delivered, queue {len(pf.queue())}\n"
                                 + pf.log_text()[-3000:] + srv.log()[-3000:])
        srv.stop()

        store = Store(srv.mail_root)
        box = store.mailbox(USER)
        infos = box.list(INBOX)
        uids = [m.uid for m in infos]
        assert uids == sorted(set(uids)), "UIDs unique and ascending"
        seqs = []
        for m in infos:
            data = box.read(INBOX, m.uid)
            assert len(data) == m.size
            found = re.search(rb"\r\nX-Seq: (\d+)\r\n", data)
            assert found and data.endswith(b"END-OF-MESSAGE %s\r\n" % found.group(1))
            seqs.append(int(found.group(1)))
        dupes = {s for s in seqs if seqs.count(s) > 1}
        assert not dupes, f"delivered twice: {sorted(dupes)[:20]}"
        assert sorted(seqs) == list(range(TOTAL)), f"missing: {sorted(set(range(TOTAL)) - set(seqs))[:20]}"
        assert os.listdir(maildir / "tmp") == []
        assert count_files(maildir) == TOTAL  # no stray file outside the index
        store.close()
        log = pf.log_text()
        print(f"\ncrash test: {TOTAL} delivered once each; {log.count('status=deferred')} deferrals, "
              f"{log.count('duplicate of an earlier delivery')} retried deliveries recognised as duplicates, "
              f"{srv.log().count('from tmp/')} committed files rolled forward from tmp/")
    finally:
        pf.stop()
        shutil.rmtree(wd, ignore_errors=True)
