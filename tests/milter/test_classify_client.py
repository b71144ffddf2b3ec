"""client/mailsift-classify.c: `mailsift classify` through the classify socket in C (spamc's
part). It must print what `mailsift classify` prints and exit as it exits, through a real
`mailsift milter`'s socket, and hand every message it cannot get a verdict for to `mailsift
classify` (no socket, options it does not handle, an unreadable file) without losing it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Callable

import pytest

from harness.procs import wait_for
from milter_helpers import MilterProcess, corpus_files

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "client" / "mailsift-classify.c"
DATA = ROOT / "tests" / "data"


def build(out: Path, mailsift_bin: str) -> str:
    """This checkout's client, built as the Makefile builds it, handing over to `mailsift_bin`."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc missing: `make apt` installs it (deploy/apt-packages.txt)")
    subprocess.run([gcc, "-O2", "-Wall", "-Wextra", "-Werror", f'-DMAILSIFT_BIN="{mailsift_bin}"',
                    "-o", str(out), str(SOURCE)], check=True, capture_output=True, timeout=120)
    return str(out)


def run(argv: list[str], stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    p = subprocess.run(argv, input=stdin, capture_output=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


def messages() -> list[Path]:
    """tests/data's messages: the classifier's samples and the odd shapes (no body separator,
    bare CR, CRLF, header only, empty, 8-bit headers) that -p must rebuild byte for byte."""
    return sorted(p for p in DATA.rglob("*.eml"))


@pytest.fixture
def route_milter(milter_factory: Callable[..., MilterProcess], workdir: Path,
                 trained_dbpath: Path) -> Path:
    sock = workdir / "run" / "classify.sock"
    cfg = workdir / "milter.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\nsocket = "{sock}"\n[milter]\nclamd = ""\n')
    milter = milter_factory("--config", str(cfg))
    wait_for(lambda: "classify socket on" in milter.log(), 30, what="classify socket")
    return sock


def test_c_client_matches_mailsift_classify(mailsift_bin: str, workdir: Path, trained_dbpath: Path,
                                            route_milter: Path, corpora: Path) -> None:
    sock = route_milter
    # It cannot hand over here: every verdict below is its own, from the daemon.
    alone_c = build(workdir / "mailsift-classify-alone", "/nonexistent/mailsift")
    client = workdir / "client.toml"  # the client's own dbpath holds no model
    client.write_text(f'[classifier]\ndbpath = "{workdir}/no-model"  # not read\n'
                      f"socket = 'unix:{sock}'\n\n[milter]\nclamd = \"\"\n")
    alone = workdir / "alone.toml"
    alone.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\n')
    files = [str(p) for p in messages()]
    files += [str(p) for p in corpus_files(corpora, "spamassassin/spam")[300:306]]
    files += [str(p) for p in corpus_files(corpora, "spamassassin/easy_ham")[300:306]]

    c = run([alone_c, "--config", str(client), *files])
    py = run([mailsift_bin, "classify", "--config", str(alone), *files])
    assert c[1] == py[1] and c[0] == py[0] == 0, (c[2], py[2])
    assert {line.split(b"\t")[1] for line in c[1].splitlines()} >= {b"spam", b"ham"}
    codes = set()
    for path in files:  # one process per message, on stdin, as procmail runs it
        raw = Path(path).read_bytes()
        for flags in ([], ["-p"]):
            c = run([alone_c, *flags, "--config", str(client)], stdin=raw)
            py = run([mailsift_bin, "classify", *flags, "--config", str(alone)], stdin=raw)
            assert (c[0], c[1]) == (py[0], py[1]), (path, flags, c[2])
            codes.add(c[0])
    assert codes >= {0, 1}
    # the client's required and unsure band travel with the request, as mailsift classify's do
    client.write_text(client.read_text().replace("[milter]", "required = 9\nunsure_points = 3.0\n[milter]"))
    alone.write_text(alone.read_text() + "required = 9\nunsure_points = 3.0\n")
    for extra in ([], ["--required", "4.5"]):
        c = run([alone_c, "--config", str(client), *extra, *files])
        py = run([mailsift_bin, "classify", "--config", str(alone), *extra, *files])
        assert (c[0], c[1]) == (py[0], py[1])


def test_c_client_hands_over_to_mailsift_classify(mailsift_bin: str, workdir: Path, trained_dbpath: Path,
                                                  corpora: Path) -> None:
    """No daemon: every message is scored by `mailsift classify` in-process, stdin included."""
    c_bin = build(workdir / "mailsift-classify", mailsift_bin)
    cfg = workdir / "c.toml"
    cfg.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\nsocket = "{workdir}/nobody/classify.sock"\n')
    alone = workdir / "alone.toml"
    alone.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\n')
    spam = corpus_files(corpora, "spamassassin/spam")[300]
    raw = spam.read_bytes()
    for flags in ([], ["-p"]):
        c = run([c_bin, *flags, "--config", str(cfg)], stdin=raw)
        py = run([mailsift_bin, "classify", *flags, "--config", str(alone)], stdin=raw)
        assert c[0] == py[0] == 0 and c[1] == py[1], c[2]
    assert raw.split(b"\n\n", 1)[1] in c[1]  # -p: the whole message came back
    # no `mailsift classify` to hand it to (a broken install): -p still gives the message back
    lost = build(workdir / "mailsift-classify-lost", "/nonexistent/mailsift")
    c = run([lost, "-p", "--config", str(cfg)], stdin=raw)
    assert c[0] == 3 and c[1] == raw and b"cannot run /nonexistent/mailsift" in c[2]
    # options it leaves to mailsift classify, and no --config at all
    files = [str(p) for p in messages()[:5]]
    for argv in (["--dbpath", str(trained_dbpath), *files], ["--config", str(alone), *files]):
        c = run([c_bin, *argv])
        py = run([mailsift_bin, "classify", *argv])
        assert (c[0], c[1]) == (py[0], py[1]) and c[1].count(b"\n") == len(files)


def test_c_client_hands_over_midway(mailsift_bin: str, workdir: Path, trained_dbpath: Path,
                                    route_milter: Path, corpora: Path) -> None:
    """A file it cannot read: the lines already printed stay, `mailsift classify` does the
    rest (and says why), and the exit status combines both as mailsift classify combines."""
    c_bin = build(workdir / "mailsift-classify", mailsift_bin)
    client = workdir / "client.toml"
    client.write_text(f'[classifier]\nsocket = "{route_milter}"\n')
    alone = workdir / "alone.toml"
    alone.write_text(f'[classifier]\ndbpath = "{trained_dbpath}"\n')
    ham = [str(p) for p in corpus_files(corpora, "spamassassin/easy_ham")[300:303]]
    files = [ham[0], str(workdir / "missing.eml"), ham[1], ham[2]]
    c = run([c_bin, "--config", str(client), *files])
    py = run([mailsift_bin, "classify", "--config", str(alone), *files])
    assert c[0] == py[0] == 3 and c[1] == py[1] and c[1].count(b"\n") == 3
    assert b"missing.eml" in c[2]
    # a reader that went away (`| head -0`): exit 0, as mailsift classify
    for argv in ([c_bin, "--config", str(client), *ham], [mailsift_bin, "classify", "--config", str(client), *ham]):
        r, w = os.pipe()
        os.close(r)
        try:
            p = subprocess.run(argv, stdout=w, stderr=subprocess.PIPE, timeout=120)
        finally:
            os.close(w)
        assert p.returncode == 0, (argv[0], p.returncode, p.stderr)
    # a config that is not TOML (its socket twice, both answering): mailsift classify refuses
    # it, and so does the client (it hands it over rather than read it its own way)
    bad = workdir / "bad.toml"
    bad.write_text(client.read_text() + f'socket = "{route_milter}"\n')
    c = run([c_bin, "--config", str(bad), ham[0]])
    py = run([mailsift_bin, "classify", "--config", str(bad), ham[0]])
    assert c[0] == py[0] == 3 and c[1] == py[1] == b"" and c[2] == py[2] and b"bad.toml" in c[2]
