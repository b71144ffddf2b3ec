"""Bad input: thousands of mutated and truncated messages through the tokenizer and the
verdict, with no exception and bounded time for each."""

from __future__ import annotations

import base64
import random
import time
from pathlib import Path

import pytest

from mailsift.classifier.api import new_model
from mailsift.classifier.tokenize import tokenize

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "classifier" / "samples"
# Generous per-message bounds for a loaded 2-core machine (typical: ~1 ms per message).
BOUND_SMALL = 1.0
BOUND_HUGE = 5.0


@pytest.fixture(scope="module")
def model():  # noqa: ANN201
    m = new_model(hash_bits=16)
    for i, path in enumerate(sorted(SAMPLES.glob("*.eml"))):
        m.learn(path.read_bytes(), "spam" if "spam" in path.name else "ham")
    return m


def _seeds(corpora: Path | None) -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted(SAMPLES.glob("*.eml"))]
    if corpora is not None:
        for folder in ("spamassassin/spam_2", "csdmc2010/ham", "spamassassin/easy_ham_2"):
            seeds += [p.read_bytes() for p in sorted((corpora / folder).iterdir())[:20]]
    return seeds


def _mutate(raw: bytes, rng: random.Random) -> bytes:
    op = rng.randrange(12)
    n = len(raw)
    if op == 0:  # truncate anywhere
        return raw[: rng.randrange(n + 1)]
    if op == 1:  # random byte flips
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 50)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    if op == 2:  # NUL bytes sprinkled
        b = bytearray(raw)
        for _ in range(rng.randrange(1, 20)):
            b.insert(rng.randrange(len(b) + 1), 0)
        return bytes(b)
    if op == 3:  # broken MIME: boundary that never closes, nested declarations
        return (b"Content-Type: multipart/mixed; boundary=\"X\"\n\n--X\nContent-Type: multipart/related; "
                b"boundary=\"Y\"\n\n--Y\nContent-Type: text/html\n\n<html><b>unclosed " + raw[:2000])
    if op == 4:  # bad base64 body
        return (b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
                + base64.b64encode(raw[:500])[: rng.randrange(1, 600)] + b"!!**==\n%%%")
    if op == 5:  # wrong and unknown charsets
        cs = rng.choice([b"utf-8", b"klingon", b"utf-16", b"iso-2022-jp", b"\"\"", b"big5", b"x-\xff"])
        return b"Content-Type: text/plain; charset=" + cs + b"\n\n" + bytes(rng.randrange(256) for _ in range(300))
    if op == 6:  # malformed RFC 2047 words
        return b"Subject: =?utf-8?B?" + raw[:80] + b"?= =?bogus?Q?=ZZ=?=\n" + raw
    if op == 7:  # splice two messages
        cut = rng.randrange(n + 1)
        return raw[cut:] + raw[:cut]
    if op == 8:  # headers only, no blank line, CR-only line ends
        return raw.replace(b"\n\n", b"\n").replace(b"\n", b"\r")
    if op == 9:  # HTML soup
        return b"Content-Type: text/html\n\n" + b"<a href=" * rng.randrange(1, 500) + b"<!-- " + raw[:1000]
    if op == 10:  # huge header folding
        return b"Subject: x" + b"\n y" * rng.randrange(1, 5000) + b"\n\n" + raw[:1000]
    return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))


def test_thousands_of_mutated_messages(model, corpora: Path) -> None:  # noqa: ANN001
    rng = random.Random(20260310)
    seeds = _seeds(corpora)
    worst = 0.0
    count = 0
    for i in range(3000):
        raw = _mutate(rng.choice(seeds), rng)
        if i % 3 == 0:
            raw = _mutate(raw, rng)  # mutate twice
        start = time.perf_counter()
        toks = tokenize(raw)
        v = model.verdict(raw)
        took = time.perf_counter() - start
        worst = max(worst, took)
        assert isinstance(toks, list)
        assert v.probability is not None and 0.0 <= v.probability <= 1.0, (i, v.reason)
        assert took < BOUND_SMALL, (i, took, raw[:200])
        count += 1
    assert count == 3000


def _nested(depth: int) -> bytes:
    parts = []
    for i in range(depth):
        parts.append(f"Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n".encode())
    body = b"Content-Type: text/plain\n\ninnermost words\n"
    tail = b"".join(f"\n--b{i}--\n".encode() for i in reversed(range(depth)))
    return b"Subject: nested\n" + b"".join(parts) + body + tail


@pytest.mark.parametrize("name, raw", [
    ("10 MB line", b"Subject: long\n\n" + b"A" * (10 * 1024 * 1024)),
    ("10 MB header line", b"Subject: " + b"x" * (10 * 1024 * 1024) + b"\n\nbody\n"),
    ("10 MB of words", b"Subject: words\n\n" + b"buy cheap now " * 750_000),
    ("1000 nested parts", _nested(1000)),
    ("1000 sibling parts", b"Content-Type: multipart/mixed; boundary=\"S\"\n\n"
     + b"".join(b"--S\nContent-Type: text/plain\n\npart %d\n" % i for i in range(1000)) + b"--S--\n"),
    ("10 MB base64", b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n"
     + base64.encodebytes(b"spam " * 2_000_000)),
    ("10 MB of NUL", b"\0" * (10 * 1024 * 1024)),
    ("unclosed scripts", b"Content-Type: text/html\n\n" + b"<script>" * 30_000),
    ("unclosed comments", b"Content-Type: text/html\n\n" + b"<!-- " * 50_000),
    ("unclosed styles", b"Content-Type: text/html\n\n" + b"<style>x" * 30_000),
    ("unclosed tags", b"Content-Type: text/html\n\n" + b"<a href=" * 30_000),
    ("many addresses", b"Subject: x\n\n" + b"a@b.c " * 50_000),
    ("meta charsets", b"Content-Type: text/html; charset=utf-8\n\n" + b"<meta charset=x" * 300_000),
    ("long charset labels", b"Content-Type: text/html; charset=" + b"u" * 100_000 + b"\n\n<meta charset="
     + b"x" * 100_000 + b">\xff\xfe"),
    ("8-bit parts", b"Content-Type: multipart/mixed; boundary=\"S\"\nSubject: \xff\xfe\nFrom: \xe9 <a@b.c>\n\n"
     + b"".join(b"--S\nContent-Type: text/plain; charset=c%d\n\n\xe9\xff %d\n" % (i, i) for i in range(1000))
     + b"--S--\n"),
    ("empty", b""),
])
def test_huge_and_deep_input_bounded(model, name: str, raw: bytes) -> None:  # noqa: ANN001
    start = time.perf_counter()
    toks = tokenize(raw)
    v = model.verdict(raw)
    took = time.perf_counter() - start
    assert isinstance(toks, list) and len(toks) <= 6000
    assert v.probability is not None
    assert took < BOUND_HUGE, f"{name}: {took:.2f}s"


def test_nested_parts_still_yield_tokens() -> None:
    toks = tokenize(_nested(10))
    assert "innermost" in toks
    deep = tokenize(_nested(1000))
    assert deep  # bounded walk: some tokens, no RecursionError


def test_non_bytes_input_does_not_raise(model) -> None:  # noqa: ANN001
    assert tokenize("Subject: str input\n\nhello there")  # type: ignore[arg-type]
    assert model.verdict(bytearray(b"Subject: x\n\nhello")).probability is not None
