"""Store API cost in one process, without a protocol in front: what a change to the store's
internals (mailsift/store/api.py, indexdb.py, sync.py, listing.py) costs LMTP and IMAP.

    PYTHONPATH=TREE .venv/bin/python bench/store_calls.py [--deliveries 400] [--rounds 2000]

In a fresh mail root: `deliveries` Store.deliver calls (a 3.6 KB message, each with a dedup
key, as LMTP calls it), then `rounds` IMAP-style rounds on the same INBOX (get, status, read,
a \\Flagged change). Prints wall and CPU seconds of each phase. Deliveries wait for fsync, so
their wall time follows the disk; CPU time shows the store's own cost. To compare two trees,
alternate them several times (the machine is shared: figures are noisy) and take medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from mailsift.store.api import INBOX, Store

MESSAGE = b"From: a@example.test\nTo: b@example.test\nSubject: hello\n\n" + b"line of body text\n" * 200


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deliveries", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        store = Store(root)
        box = store.mailbox("bob@example.test")
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.deliveries):
            box.deliver(MESSAGE, dedup_key=f"digest-{i}")
        dwall, dcpu = time.perf_counter() - wall, time.process_time() - cpu
        uids = box.uids(INBOX)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(args.rounds):
            uid = uids[i % len(uids)]
            box.get(INBOX, uid)
            box.status(INBOX)
            box.read(INBOX, uid)
            box.store_flags(INBOX, [uid], {"\\Flagged"}, "add" if (i // len(uids)) % 2 == 0 else "remove")
        iwall, icpu = time.perf_counter() - wall, time.process_time() - cpu
        store.close()
    print(f"deliver x{args.deliveries}: wall {dwall:.2f} s, cpu {dcpu:.2f} s | "
          f"imap rounds x{args.rounds}: wall {iwall:.2f} s, cpu {icpu:.2f} s")


if __name__ == "__main__":
    main()
