"""Declared charsets: only real text encodings decode (no punycode, idna, rot13, codecs)."""

from __future__ import annotations

import time

import pytest

from mailsift import charsets
from mailsift.classifier.tokenize import tokenize
from mailsift.protocols.imap import search


def two_parts(charset: str, body: str) -> bytes:
    part = f"--b\r\nContent-Type: text/plain; charset={charset}\r\n\r\n{body}\r\n"
    return ("From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=b\r\n\r\n" + part * 2 + "--b--\r\n").encode()


@pytest.mark.parametrize("label", ["punycode", "IDNA", '"punycode"', "rot13", "rot_13", "base64_codec",
                                   "zlib_codec", "hex", "uu_codec", "quopri_codec", "bz2_codec",
                                   "unicode_escape", "raw_unicode_escape", "undefined", "charmap",
                                   "no-such-charset", "", "utf-8" + "x" * 100])
def test_refused_labels(label: str) -> None:
    assert charsets.text_codec(label) is None


@pytest.mark.parametrize(("label", "codec"), [("UTF-8", "utf-8"), ("iso-8859-1", "iso8859-1"),
                                               ("Windows-1252", "cp1252"), ("koi8-r", "koi8-r"),
                                               ("utf-8*en", "utf-8"), ("us-ascii", "latin-1"),
                                               ("unknown-8bit", "latin-1"), ("gb2312", "gb2312")])
def test_real_charsets(label: str, codec: str) -> None:
    assert charsets.text_codec(label) == codec


def test_punycode_part_is_not_decoded_as_punycode() -> None:
    # "bcher-kva" is the punycode of "bücher": read as punycode it would become one word.
    toks = tokenize(two_parts("punycode", "bcher-kva sale"))
    assert "bücher" not in toks
    assert "sale" in toks and any("bcher" in t for t in toks)
    assert tokenize(two_parts("rot13", "uryyb jbeyq")).count("uryyb") == 2  # not "hello"


def test_punycode_header_word_is_not_decoded() -> None:
    toks = tokenize(b"From: a@example.org\r\nSubject: =?punycode?Q?bcher-kva?=\r\n\r\nhi\r\n")
    assert "subject:bücher" not in toks


def test_punycode_part_costs_what_utf8_costs() -> None:
    """Python's punycode decoder is quadratic: 2 x 127 KB took over a second per message."""
    body = "x-" + "a" * 127_000

    def best(charset: str) -> float:
        raw = two_parts(charset, body)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            tokenize(raw)
            times.append(time.perf_counter() - t0)
        return min(times)

    utf8, puny = best("utf-8"), best("punycode")
    assert puny <= utf8 * 20, f"punycode {puny:.4f}s vs utf-8 {utf8:.4f}s"


def test_imap_search_decodes_real_charsets_only() -> None:
    assert search._charset_decode(b"bcher-kva", "punycode") == "bcher-kva"
    assert search._charset_decode(b"uryyb", "rot13") == "uryyb"
    assert search._charset_decode("café".encode("latin-1"), "iso-8859-1") == "café"
    assert search.decode_words(b"=?punycode?Q?bcher-kva?=") == "bcher-kva"


def test_header_text_decodes_real_charsets_only() -> None:
    assert charsets.header_text("=?iso-8859-1?Q?caf=E9?= au lait") == "café au lait"
    assert charsets.header_text("=?punycode?Q?bcher-kva?=") == "bcher-kva"
    assert charsets.header_text("plain =?broken") == "plain =?broken"


def _variants(name: str) -> set[str]:
    return {name, name.upper(), name.replace("_", "-"), name.replace("-", "_"), name.replace("_", " ")}


def test_lookup_answers_as_the_codec_registry_for_every_name_it_knows() -> None:
    import codecs
    import encodings.aliases
    import pkgutil

    names: set[str] = set()
    for n in [*encodings.aliases.aliases, *encodings.aliases.aliases.values(),
              *(m.name for m in pkgutil.iter_modules(encodings.__path__)),
              "Shift_JIS", "ks_c_5601-1987", "unicode-1-1-utf-7", "macintosh", "ISO 8859-1", "latin-1"]:
        names |= _variants(n)
    for name in sorted(names):
        try:
            expected = codecs.lookup(name).name
        except LookupError:
            expected = None
        got = charsets.lookup(name)
        assert (got.name if got is not None else None) == expected, name


def test_made_up_charsets_leave_nothing_behind_in_the_codec_registry() -> None:
    # The standard search function caches every name it fails to find for the life of the
    # process: a milter reading one made-up charset per message would grow without end.
    import encodings

    def message(i: int) -> bytes:
        cs = f"x-made-up-{i:06d}"
        return (f"From: a@example.org\r\nSubject: =?{cs}?q?hello?=\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/html; charset={cs}-b\r\n\r\n"
                f"<html><head><meta charset=\"{cs}-c\"></head><body>caf\xe9 sale</body></html>\r\n"
                ).encode("latin-1")

    for i in range(20):  # warm: whatever the first messages load once
        tokenize(message(i))
    before = len(encodings._cache)
    for i in range(20, 2020):
        tokenize(message(i))
        search._charset_decode(b"abc", f"x-other-{i}")
    assert len(encodings._cache) - before < 10
