"""The tokenizer on hand-written messages: headers, MIME, RFC 2047, HTML, URLs, ignored headers."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailsift.classifier.tokenize import parse_headers, registrable, tokenize

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "classifier" / "samples"


def msg(headers: str, body: str = "hello world\n") -> bytes:
    return (headers.strip("\n") + "\n\n" + body).encode("utf-8")


def test_subject_words_are_prefixed_and_lowercased() -> None:
    toks = tokenize(msg("From: a@example.org\nSubject: Cheap WATCHES here"))
    assert {"subject:cheap", "subject:watches", "subject:here"} <= set(toks)
    assert "cheap" not in toks  # the body does not contain it


def test_rfc2047_subject_is_decoded() -> None:
    encoded = "=?utf-8?B?" + base64.b64encode("Günstige Uhren".encode()).decode() + "?="
    toks = tokenize(msg(f"Subject: {encoded}"))
    assert "subject:günstige" in toks and "subject:uhren" in toks
    assert "subject:encoded" in toks


def test_quoted_printable_rfc2047_and_bad_charset() -> None:
    toks = tokenize(msg("Subject: =?iso-8859-1?Q?caf=E9_cr=E8me?=\nFrom: =?x-nonsense?Q?Bob?= <b@example.org>"))
    assert "subject:café" in toks and "subject:crème" in toks
    assert "from:addr:b@example.org" in toks


def test_addresses_and_domains() -> None:
    toks = tokenize(msg('From: "Shop Deals" <deals123@mail.shop.example.co.uk>\nReply-To: other@free.example'))
    assert "from:addr:deals123@mail.shop.example.co.uk" in toks
    assert "from:dom:example.co.uk" in toks
    assert "from:shape:a9" in toks
    assert "from:shop" in toks and "from:deals" in toks
    assert "reply:dom:free.example" in toks


def test_registrable() -> None:
    assert registrable("a.b.example.com") == "example.com"
    assert registrable("mail.shop.example.co.uk") == "example.co.uk"
    assert registrable("Example.ORG.") == "example.org"


@pytest.mark.parametrize("name", ["X-Spam-Status", "X-Spam-Flag", "X-Virus-Scanned", "X-Virus-Status",
                                  "X-Bogosity", "X-Spam-Level", "X-AmavisStatus", "X-DSPAM-Result",
                                  "Delivered-To", "X-Original-To", "X-Mozilla-Status", "X-UIDL",
                                  "Authentication-Results", "Received-SPF", "XStatus"])
def test_verdict_and_recipient_headers_are_ignored(name: str) -> None:
    base = msg("From: a@example.org\nSubject: hi")
    with_header = msg(f"From: a@example.org\nSubject: hi\n{name}: YES, score=99 zzmarker required=5 spam@collector.example")
    assert tokenize(with_header) == tokenize(base)


def test_recipient_side_received_hops_are_dropped() -> None:
    raw = msg("""
Received: from localhost (localhost [127.0.0.1])
	by mail.collector.example (Postfix) with ESMTP id 1
	for <me@collector.example>; Tue, 6 Aug 2002 05:55:17 -0400
Received: from pop.collector.example [203.0.113.5]
	by localhost with POP3 (fetchmail-5.9.0)
	for me@localhost (single-drop); Tue, 06 Aug 2002 10:55:17 +0100
Received: from relay.sender.example (relay.sender.example [198.51.100.9])
	by mx.collector.example (8.9.3/8.9.3) with ESMTP id BAA09623
	for <me@collector.example>; Sun, 4 Aug 2002 01:37:55 +0100
Received: from [10.0.0.5] by relay.sender.example with SMTP; Sat, 3 Aug 2002 17:32:59 -0700
Delivered-To: me@collector.example
From: someone@sender.example
To: me@collector.example
Subject: test
""", "see http://www.collector.example/x and http://www.sender.example/y\n")
    toks = tokenize(raw)
    joined = " ".join(toks)
    assert "collector" not in joined, [t for t in toks if "collector" in t]
    assert "rcvd:helo:sender.example" in toks
    assert "rcvd:ip:198.51" in toks
    # the site's own links give no token: how often they occur says which site collected the mail
    assert "url:sender.example" in toks and not [t for t in toks if "site" in t]
    assert "localhost" not in joined


def test_mailing_list_delivery_headers_below_the_top_do_not_hide_the_list() -> None:
    raw = msg("""
Delivered-To: me@collector.example
Received: from lists.debian.example (lists.debian.example [82.195.75.100])
	by mx.collector.example with ESMTP id n24; Sat, 15 May 2010 08:07:39 -0700
X-Original-To: lists-user@lists.debian.example
Delivered-To: lists-user@lists.debian.example
From: poster@debian.example
Subject: question
""")
    toks = tokenize(raw)
    assert "rcvd:helo:debian.example" in toks
    assert "from:dom:debian.example" in toks


def test_multipart_base64_html_and_attachments() -> None:
    html = '<html><body><font color="red">Buy <b>now</b></font> <a href="http://shop.example.com/buy?x=1">here</a>' \
           '<img src="http://203.0.113.9/t.gif" width=1 height=1></body></html>'
    raw = f"""From: s@example.org
Subject: offer
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="BOUND"

--BOUND
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

{base64.encodebytes(html.encode()).decode()}
--BOUND
Content-Type: application/octet-stream; name="invoice.PDF.exe"
Content-Disposition: attachment; filename="invoice.PDF.exe"
Content-Transfer-Encoding: base64

TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
--BOUND--
""".encode()
    toks = tokenize(raw)
    assert {"buy", "now", "here"} <= set(toks)
    assert {"html:font", "html:font:color", "html:a", "html:img", "html:img:tiny"} <= set(toks)
    assert "url:example.com" in toks and "url:host:shop.example.com" in toks and "url:path:buy" in toks
    assert "url:ip" in toks
    assert "attach:ext:exe" in toks and "mime:application/octet-stream" in toks
    assert not any("<" in t or "font color" in t for t in toks)


def test_quoted_printable_body_and_charset() -> None:
    raw = msg("Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable",
              "Gr=FC=DFe aus M=FCnchen, soft=\nbreak\n")
    toks = tokenize(raw)
    assert "grüße" in toks and "münchen" in toks and "softbreak" in toks


def test_wrong_charset_label_still_yields_words() -> None:
    raw = b"Content-Type: text/plain; charset=utf-8\n\nna\xefve caf\xe9 bargain\n"
    assert "bargain" in tokenize(raw)
    raw = b"Content-Type: text/plain; charset=klingon-9\n\nplain words here\n"
    assert "words" in tokenize(raw)


def test_long_runs_become_skip_tokens_and_bigrams_exist() -> None:
    toks = tokenize(msg("Subject: x", "start " + "a" * 57 + " end of mail\n"))
    assert "skip:a 50" in toks
    assert "end of" in toks and "of mail" in toks


def test_header_parser_unfolds() -> None:
    items = parse_headers(b"Subject: one\n two\nX-A:b\nbroken line\n")
    assert ("Subject", "one two") in items and ("X-A", "b") in items


def test_sample_messages_tokenize() -> None:
    for path in SAMPLES.glob("*.eml"):
        toks = tokenize(path.read_bytes())
        assert len(toks) > 30, path
        assert not any(t.startswith(("x-spam", "spam-status")) for t in toks)


def test_multipart_edge_cases() -> None:
    # a declared boundary that never occurs: the body is still read
    raw = b'Content-Type: multipart/alternative; boundary="=B 1"\n\n--= B 1\nContent-Type: text/plain\n\nbargain here\n'
    assert "bargain" in tokenize(raw) and "mime:broken-multipart" in tokenize(raw)
    # a boundary that is the prefix of a longer line is not a delimiter; no final delimiter
    raw = (b'Content-Type: multipart/mixed; boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
           b"first part\n--Bogus line inside\nstill first\n--B\n\nsecond untyped part\n")
    toks = tokenize(raw)
    assert {"first", "still", "bogus", "second", "untyped", "mime:unclosed"} <= set(toks)
    # CRLF line ends, message/rfc822 inside, quoted-printable part
    raw = (b'Content-Type: multipart/mixed; boundary="XY"\r\n\r\n--XY\r\n'
           b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\nContent-Type: text/plain\r\n\r\nforwarded words\r\n"
           b"--XY\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
           b"caf=E9 cr=E8me\r\n--XY--\r\n")
    toks = tokenize(raw)
    assert {"forwarded", "words", "café", "crème", "mime:message/rfc822", "mime:cte:quoted-printable"} <= set(toks)
