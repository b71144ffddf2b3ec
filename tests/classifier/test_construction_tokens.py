"""Tokens of how a message is built: a declared charset its bytes contradict."""

from __future__ import annotations

import base64

import pytest

from mailsift.classifier.tokenize import tokenize

CHARSET_TOKENS = {"charset:meta-mismatch", "charset:meta-only", "charset:8bit-undeclared", "charset:invalid",
                  "subject:8BIT", "from:8BIT"}


def raw(ctype: str, body: bytes, headers: bytes = b"Subject: hello\nFrom: Ann <ann@example.org>\n",
        cte: str = "") -> bytes:
    extra = f"Content-Transfer-Encoding: {cte}\n".encode() if cte else b""
    return headers + b"Content-Type: " + ctype.encode() + b"\n" + extra + b"\n" + body


def construction(message: bytes) -> set[str]:
    return set(tokenize(message)) & CHARSET_TOKENS


def page(meta: str) -> bytes:
    return (f'<html><head><meta http-equiv="Content-Type" content="text/html; charset={meta}">'
            "</head><body><p>Our offer for you</p></body></html>").encode()


@pytest.mark.parametrize("declared, meta, expected", [
    ("iso-8859-1", "windows-1252", {"charset:meta-mismatch"}),
    ("us-ascii", "utf-8", {"charset:meta-mismatch"}),
    ("iso-8859-1", "ISO-8859-1", set()),
    ("latin1", "iso-8859-1", set()),  # aliases of one charset agree
    ("utf8", "UTF-8", set()),
])
def test_html_meta_charset_against_the_mime_one(declared: str, meta: str, expected: set[str]) -> None:
    assert construction(raw(f"text/html; charset={declared}", page(meta))) == expected


def test_html_meta_charset_without_a_mime_one() -> None:
    assert construction(raw("text/html", page("windows-1252"))) == {"charset:meta-only"}
    assert construction(raw("text/html; charset=utf-8", b"<html><body>no meta</body></html>")) == set()


def test_meta_is_read_after_the_transfer_encoding_in_a_multipart() -> None:
    body = (b"--B\nContent-Type: text/plain; charset=us-ascii\n\nplain words\n"
            b"--B\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: base64\n\n"
            + base64.encodebytes(page("gb2312")) + b"--B--\n")
    assert construction(raw('multipart/alternative; boundary="B"', body)) == {"charset:meta-mismatch"}


@pytest.mark.parametrize("ctype", ["text/plain", "text/plain; charset=us-ascii", "text/plain; charset=ASCII"])
def test_eight_bit_bytes_without_a_charset_that_allows_them(ctype: str) -> None:
    assert construction(raw(ctype, "Café prices".encode("utf-8"))) == {"charset:8bit-undeclared"}
    assert construction(raw(ctype, b"Cafe prices")) == set()


def test_eight_bit_hidden_in_quoted_printable_counts() -> None:
    assert construction(raw("text/plain", b"Caf=E9 prices\n", cte="quoted-printable")) == {"charset:8bit-undeclared"}


@pytest.mark.parametrize("ctype, body", [
    ("text/plain; charset=utf-8", "Café".encode("latin-1")),  # not UTF-8
    ("text/plain; charset=klingon", "Café".encode("utf-8")),  # no such charset
    ("text/plain; charset=windows-1252", b"undefined \x81\x8d bytes"),
])
def test_bytes_the_declared_charset_cannot_read(ctype: str, body: bytes) -> None:
    assert construction(raw(ctype, body)) == {"charset:invalid"}


@pytest.mark.parametrize("ctype, body", [
    ("text/plain; charset=utf-8", "Café, naïve".encode("utf-8")),
    ("text/plain; charset=iso-8859-1", "Café".encode("latin-1")),
    ("text/plain; charset=klingon", b"ascii only"),  # nothing contradicts it
    ("text/plain; charset=koi8-r", "Привет".encode("koi8-r")),
])
def test_bytes_that_fit_their_charset_give_no_token(ctype: str, body: bytes) -> None:
    assert construction(raw(ctype, body)) == set()


def test_raw_eight_bit_in_subject_and_from() -> None:
    headers = "Subject: Günstig\nFrom: Jürgen <j@example.org>\n".encode("latin-1")
    assert construction(raw("text/plain", b"hello", headers)) == {"subject:8BIT", "from:8BIT"}
    encoded = b"Subject: =?iso-8859-1?Q?G=FCnstig?=\nFrom: =?utf-8?Q?J=C3=BCrgen?= <j@example.org>\n"
    toks = tokenize(raw("text/plain", b"hello", encoded))
    assert "subject:günstig" in toks and not (set(toks) & CHARSET_TOKENS)  # RFC 2047 is the right way


def test_hostile_charset_labels_never_raise() -> None:
    labels = [b"", b"\"\"", b"punycode", b"rot13", b"base64", b"mbcs", b"..", b"x-\xff", b"utf-8:" * 50,
              b"encodings.aliases", b"a" * 500, b"utf-16", b"utf-32", b"iso-2022-jp", b"\x00"]
    for mime in labels:
        for meta in labels:
            message = (b"Content-Type: text/html; charset=" + mime + b"\n\n<html><meta charset=" + meta
                       + b"><body>\xff\xfe\x00 words \xe9</body></html>")
            toks = tokenize(message)
            assert toks and "parse:failed" not in toks, (mime, meta)


def test_the_word_8bit_is_not_the_construct() -> None:
    toks = set(tokenize(raw("text/plain", b"hello", b"Subject: 8bit MIME\nFrom: 8bit <a@example.org>\n")))
    assert "subject:8bit" in toks and not (toks & CHARSET_TOKENS)
