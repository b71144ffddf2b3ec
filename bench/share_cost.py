"""What `[classifier] share` costs the milter, and how fast a Junk move reaches another host.

One redis-server (append-only, fsync always, as docs/scaling.md asks), one `mailsift serve`
store with share on (the trainer), and two `mailsift milter` (no clamd, log level WARNING): one
with share off (the default) reading the store's own model directory, as on a single host where
the milter loads what the store's learner saves, and one with share on and its own copy of the
model (it follows the published versions, "the other host"). A Junk move makes both reload a
model once: share is charged only for what it adds. This script speaks the MTA's side of the
milter protocol (tests/milter/milter_wire.py), one client, `--per-connection` messages per
connection, alternating between the two milters round by round, while a user's Junk move is
made on the store every `--move-every` seconds (a spam from spam_2), so the share-on milter installs new model
versions during its rounds. It prints each milter's messages/s and CPU per message
(/proc/PID/stat), the versions the share-on milter installed meanwhile and the CPU of its
installer children (a process per version, run off the milter's CPU), then the time from `--moves` Junk moves (IMAP MOVE of a fresh ham) to the
share-on milter's verdict on a near-duplicate turning spam (each once the versions before it
have settled), with the store's default
`[feedback] save_interval` unless `--save-interval` is given.

    .venv/bin/python bench/share_cost.py [--messages 2000] [--rounds 4] [--moves 5]
"""

from __future__ import annotations

import argparse
import imaplib
import os
import re
import shutil
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "milter"))
sys.path.insert(0, str(ROOT / "tests"))

from harness.procs import Daemon, free_port, tcp_ready, unix_ready, wait_for  # noqa: E402
from harness.redis import RedisServer  # noqa: E402
from milter_connection_cost import bench_message  # noqa: E402
from milter_throughput import CORPORA, proc_snapshot, train_bench_model  # noqa: E402
from milter_wire import MtaSide, message_commands, packet, parse_replies  # noqa: E402

MAILSIFT = str(Path(sys.executable).parent / "mailsift")
USER, PASSWORD = "bench@example.test", "bench-pw"


def body_of(raw: bytes) -> bytes:
    m = re.search(rb"\r?\n\r?\n", raw)
    return (raw[m.end():] if m else b"").replace(b"\r\n", b"\n")


def near_verdict(sock: Path, raw: bytes, n: int) -> str:
    headers = [("From", f"<other{n}@outside.test>"), ("To", f"<{USER}>"), ("Subject", f"again {n}"),
               ("Message-ID", f"<near-{n}-{time.monotonic_ns()}@outside.test>")]
    body = body_of(raw).replace(b"\n", b"\nPS\n", 1).replace(b"\n", b"\r\n")
    mta = MtaSide(sock)
    try:
        mta.send(message_commands(headers, body, f"N{n}", mta.negotiate()))
        added, _c, _final = parse_replies(mta.replies())
        mta.send(packet(b"Q"))
    finally:
        mta.close()
    return dict(added).get("X-Spam-Status", "")


def children_cpu(pid: int) -> float:
    """CPU seconds of `pid`'s children it has waited for (the share agent's installers)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def installed_version(model: Path) -> int:
    import json

    try:
        return int(json.loads((model / "share" / "state.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return 0


def settled(redis_url: str, model: Path, quiet: float, store_model: Path, moved: list[bytes]) -> None:
    """Wait until the store has learned every message moved so far, the published version has
    not moved for `quiet` seconds and the milter has had it for 3 s (the moves before are all
    through), so a timed move is not helped by an earlier one."""
    import json

    from mailsift.classifier.record import LearnRecord, message_digest
    from mailsift.resp import SyncRespClient

    def learned() -> bool:
        with LearnRecord(store_model) as rec:
            return all(rec.get(message_digest(raw)) is not None for raw in moved)

    wait_for(learned, 300, interval=0.2, what="the store learning every move")

    r = SyncRespClient(redis_url, timeout=5, decode=True)
    try:
        last, since, had = None, time.monotonic(), None
        while True:
            v = r.command("HGET", "mailsift:share:model", "version")
            try:
                mine = json.loads((model / "share" / "state.json").read_text())["version"]
            except (OSError, ValueError, KeyError):
                mine = None
            if v != last:
                last, since = v, time.monotonic()
            if str(mine) != v:
                had = None
            elif had is None:
                had = time.monotonic()
            # the milter's watcher reloads a new file within a second or two of its install
            if had is not None and time.monotonic() - had >= 3 and time.monotonic() - since >= quiet:
                return
            time.sleep(0.2)
    finally:
        r.close()


class Store:
    def __init__(self, wd: Path, model: Path, redis_url: str, save_interval: float | None) -> None:
        from mailsift.store.users import Users

        users = wd / "users.db"
        Users(users).add(USER, PASSWORD)
        self.imap_port, self.lmtp_port = free_port(), free_port()
        cfg = wd / "store.toml"
        cfg.write_text(f'[classifier]\ndbpath = "{model}"\nshare = "{redis_url}"\n'
                       f'[store]\nmail_root = "{wd / "mail"}"\nusers = "{users}"\n'
                       f'lmtp = "127.0.0.1:{self.lmtp_port}"\nimap = "127.0.0.1:{self.imap_port}"\n'
                       'pop3 = "off"\nlookup = "off"\nhostname = "imap.bench.test"\n[feedback]\n'
                       + (f"save_interval = {save_interval}\n" if save_interval is not None else ""))
        self.daemon = Daemon([MAILSIFT, "serve", "--config", str(cfg), "--log-level", "WARNING"],
                             wd / "store.log").start()
        self.daemon.wait_ready(lambda: tcp_ready("127.0.0.1", self.imap_port), 60, what="mailsift serve")
        self.lock = threading.Lock()

    def junk(self, raw: bytes) -> float:
        """Deliver `raw` (without the corpus's own X-Spam-*/X-Virus-* lines, which LMTP would file
        by) into INBOX, MOVE it into Junk; returns when the MOVE was answered (monotonic)."""
        m = re.search(rb"\r?\n\r?\n", raw)
        head, rest = (raw[:m.start() + 1], raw[m.start() + 1:]) if m else (raw, b"")
        raw = re.sub(rb"(?im)^X-(?:Spam|Virus)-[^\n]*\n(?:[ \t][^\n]*\n)*", b"", head) + rest
        # smtplib dot-stuffs bytes as they are: with bare LF line ends the LMTP server (CRLF, as Postfix
        # sends) would keep a ".." line stuffed, and the store would learn another message
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        with self.lock:
            with smtplib.LMTP("127.0.0.1", self.lmtp_port) as lmtp:
                lmtp.sendmail("sender@outside.test", [USER], raw)
            imap = imaplib.IMAP4("127.0.0.1", self.imap_port)
            try:
                imap.login(USER, PASSWORD)
                imap.select("INBOX")
                uids = imap.uid("SEARCH", None, "ALL")[1][0].split()
                assert len(uids) == 1, f"INBOX holds {len(uids)} messages, not the one just delivered"
                assert imap.uid("MOVE", uids[-1].decode(), "Junk")[0] == "OK"
                done = time.monotonic()
                imap.logout()
            finally:
                try:
                    imap.shutdown()
                except OSError:
                    pass
            return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000, help="messages per milter per round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--per-connection", type=int, default=10)
    ap.add_argument("--size", type=int, default=5120)
    ap.add_argument("--move-every", type=float, default=5.0, help="seconds between Junk moves during the rounds")
    ap.add_argument("--moves", type=int, default=5, help="Junk moves timed to the other host's verdict")
    ap.add_argument("--save-interval", type=float, default=None,
                    help="[feedback] save_interval of the store (default: the store's default)")
    args = ap.parse_args()
    if not CORPORA.is_dir():
        raise SystemExit(f"needs the corpora in {CORPORA}")
    wd = Path(tempfile.mkdtemp(prefix="mailsift-sharecost-"))
    train_bench_model(wd / "template")
    fresh = sorted((CORPORA / "spamassassin" / "easy_ham_2").iterdir())
    redis = RedisServer(wd / "redis", persist=True).start()
    daemons: list[Daemon] = []
    try:
        for name in ("store", "on"):
            shutil.copytree(wd / "template", wd / f"model-{name}")
        store = Store(wd, wd / "model-store", redis.url, args.save_interval)
        daemons.append(store.daemon)
        milters: dict[str, tuple[Daemon, Path]] = {}
        for name in ("off", "on"):
            cfg = wd / f"{name}.toml"
            cfg.write_text('[milter]\nclamd = ""\non_scan_error = "accept"\n'
                           + (f'[classifier]\nshare = "{redis.url}"\n' if name == "on" else ""))
            sock = wd / f"{name}.sock"
            d = Daemon([MAILSIFT, "milter", "--config", str(cfg), "--socket", f"unix:{sock}",
                        "--dbpath", str(wd / ("model-store" if name == "off" else f"model-{name}")),
                        "--log-level", "WARNING"], wd / f"{name}.log").start()
            daemons.append(d)
            milters[name] = (d, sock)
            wait_for(lambda: unix_ready(sock), 60, what="mailsift milter")
        wait_for(lambda: (wd / "model-on" / "share" / "state.json").exists(), 60,
                 what="the share-on milter installing the first published version")

        headers, body = bench_message(args.size)
        per = args.per_connection
        messages = args.messages // per * per

        def run(sock: Path) -> None:
            for _ in range(messages // per):
                mta = MtaSide(sock)
                try:
                    protocol = mta.negotiate()
                    for i in range(per):
                        mta.send(message_commands(headers, body, f"M{i}", protocol))
                        final = mta.replies()[-1][0]
                        if final not in (b"c", b"a"):
                            raise SystemExit(f"the milter answered {final!r}")
                        mta.send(packet(b"A"))
                    mta.send(packet(b"Q"))
                finally:
                    mta.close()

        for _d, sock in milters.values():
            run(sock)  # warm-up
        stop = threading.Event()
        moved: list[bytes] = []
        pool = iter(sorted((CORPORA / "spamassassin" / "spam_2").iterdir()))  # spam: the ham stays ham

        def mover() -> None:
            while not stop.wait(args.move_every):
                raw = next(pool).read_bytes()
                store.junk(raw)
                moved.append(raw)

        moving = threading.Thread(target=mover, daemon=True)
        moving.start()
        on_pid = milters["on"][0].pid
        kids0, version0 = children_cpu(on_pid), installed_version(wd / "model-on")
        rates: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        print("load average at the start of the rounds: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
              + f" ({os.cpu_count()} CPUs)")
        print(f"milter messages/s, share off vs on: {messages} messages of {len(body)} body bytes per round, "
              f"{per} per connection, one client, no clamd; a Junk move on the store every {args.move_every:g} s")
        for r in range(args.rounds):
            for name in (("off", "on") if r % 2 == 0 else ("on", "off")):
                daemon, sock = milters[name]
                c0 = proc_snapshot()[daemon.pid][1]
                t0 = time.perf_counter()
                run(sock)
                dt = time.perf_counter() - t0
                us = (proc_snapshot()[daemon.pid][1] - c0) / messages * 1e6
                rates[name].append(messages / dt)
                cpu[name].append(us)
                print(f"  round {r + 1}: share {name:>3}: {messages / dt:6.0f} msgs/s, {us:4.0f} us CPU/msg")
        stop.set()
        moving.join()
        kids, installs = children_cpu(on_pid) - kids0, installed_version(wd / "model-on") - version0
        print("load average at the end of the rounds: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        off, on = statistics.median(rates["off"]), statistics.median(rates["on"])
        # each round's on/off pair ran back to back: their ratio is less moved by the host's drift
        ratios = [b / a for a, b in zip(rates["off"], rates["on"])]
        log_on = (wd / "on.log").read_text(errors="replace")
        print(f"median: off {off:.0f} msgs/s ({statistics.median(cpu['off']):.0f} us/msg), on {on:.0f} msgs/s "
              f"({statistics.median(cpu['on']):.0f} us/msg): {(on - off) / off * 100:+.1f} %; median of the rounds' "
              f"on/off ratios {statistics.median(ratios):.3f}; {len(moved)} Junk moves during the rounds")
        print(f"share-on milter: {installs} version(s) installed during the rounds, its installer children "
              f"{kids:.2f} s CPU (not in its figures above: they run off the milter's CPU)")

        print(f"Junk move on the store -> spam verdict on the share-on milter ([feedback] save_interval "
              f"{args.save_interval if args.save_interval is not None else 'default'}):")
        took: list[float] = []
        candidates = iter(enumerate(fresh))
        while len(took) < args.moves:
            settled(redis.url, wd / "model-on", (args.save_interval or 5.0) + 2, wd / "model-store", moved)
            n, path = next(candidates)
            raw = path.read_bytes()
            if not near_verdict(milters["on"][1], raw, n).startswith("No"):
                continue  # already spam after the moves before it (the same mailing list): no test
            at = store.junk(raw)
            moved.append(raw)
            wait_for(lambda: near_verdict(milters["on"][1], raw, n).startswith("Yes"), 60, interval=0.1,
                     what="the other host's verdict")
            took.append(time.monotonic() - at)
            print(f"  move {len(took)} ({path.name}): {took[-1]:.1f} s")
        if took:
            print(f"median {statistics.median(took):.1f} s, max {max(took):.1f} s over {len(took)} moves")
        errors = [line for line in log_on.splitlines() if "ERROR" in line]
        print(f"share-on milter log: {len(errors)} errors" + "".join(f"\n  {line}" for line in errors[:5]))
    finally:
        for d in daemons:
            d.stop()
        redis.stop()
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
