"""FETCH data computed from message bytes alone: RFC822.SIZE, BODY[section]<partial>,
BODYSTRUCTURE, ENVELOPE. (tests/imap/test_dovecot_differential.py checks the same functions
against Dovecot over many more messages.)"""

from pathlib import Path

import pytest

from mailsift.protocols.imap import mimetree
from mailsift.protocols.imap.bodystructure import body_structure, encode_body
from mailsift.protocols.imap.envelope import envelope, parse_addresses
from mailsift.protocols.imap.parser import parse_section
from mailsift.protocols.imap.response import encode
from mailsift.protocols.imap.sections import partial, section_bytes

from imap.wire import parse_values

DATA = Path(__file__).resolve().parent.parent / "data" / "imap"


def load(name: str) -> tuple[bytes, mimetree.Part]:
    raw = mimetree.to_crlf((DATA / name).read_bytes())
    return raw, mimetree.parse(raw)


def sec(root: mimetree.Part, spec: str) -> bytes:
    return section_bytes(root, parse_section(spec))


def bs(root: mimetree.Part, extended: bool = True):
    return parse_values(encode_body(body_structure(root, extended)))[0]


def test_size_counts_crlf() -> None:
    original = (DATA / "01_plain_lf.eml").read_bytes()
    raw, _ = load("01_plain_lf.eml")
    assert b"\r\n" not in original
    assert len(raw) == len(original) + original.count(b"\n")
    assert mimetree.to_crlf(b"a\r\nb\nc") == b"a\r\nb\r\nc"


def test_plain_message_sections_and_structure() -> None:
    raw, root = load("01_plain_lf.eml")
    header, _, body = raw.partition(b"\r\n\r\n")
    assert sec(root, "") == raw
    assert sec(root, "HEADER") == header + b"\r\n\r\n"
    assert sec(root, "TEXT") == body
    assert sec(root, "1") == body  # a single-part message's part 1 is its body
    assert sec(root, "HEADER.FIELDS (subject FROM)") == (
        b"From: Alice Example <alice@example.test>\r\nSubject: plain text with LF line ends\r\n\r\n")
    assert b"Subject" not in sec(root, "HEADER.FIELDS.NOT (Subject)")
    assert partial(sec(root, ""), (0, 4)) == b"From"
    assert partial(sec(root, ""), (len(raw) + 5, 10)) == b""
    assert bs(root) == [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit",
                        len(body), body.count(b"\n"), None, None, None, None]
    assert bs(root, extended=False) == bs(root)[:8]


def test_multipart_alternative() -> None:
    _, root = load("02_alternative.eml")
    s = bs(root)
    assert s[0][:8] == [b"text", b"plain", [b"charset", b"UTF-8"], None, None, b"quoted-printable", 50, 2]
    assert s[1][:5] == [b"text", b"html", [b"charset", b"utf-8"], None, None]
    assert s[2] == b"alternative" and s[3] == [b"boundary", b"=_alt_boundary"]
    # preamble and epilogue belong to neither part; the CRLF before a delimiter is the delimiter's
    assert sec(root, "1") == b"Gr=C3=BC=C3=9Fe, Bob!\r\nDie Stra=C3=9Fe ist lang.\r\n"
    assert sec(root, "2.MIME") == b"Content-Type: text/html; charset=\"utf-8\"\r\nContent-Transfer-Encoding: 7BIT\r\n\r\n"
    assert sec(root, "TEXT").startswith(b"This is a preamble.") and sec(root, "TEXT").endswith(b"epilogue.\r\n")
    assert sec(root, "3") == b"" and sec(root, "1.1.1") == b""
    assert sec(root, "1.1") == sec(root, "1")  # "1" under a single part names it once (Dovecot)


def test_extension_fields_of_an_attachment() -> None:
    _, root = load("03_nested_attachment.eml")
    pdf = bs(root)[1]
    assert pdf[:7] == [b"application", b"pdf", [b"name", b"report.pdf"], b"<part3.report@example.test>",
                       b"The quarterly report", b"base64", 154]
    assert pdf[7:] == [b"Q2hlY2sgSW50ZWdyaXR5IQ==", [b"attachment", [b"filename", b"report.pdf", b"size", b"42"]],
                       [b"en", b"de"], b"http://example.test/report.pdf"]
    assert sec(root, "1.2") == b"<p>HTML body</p>"


def test_encapsulated_message_sections() -> None:
    _, root = load("04_forwarded_rfc822.eml")
    assert sec(root, "2.HEADER").startswith(b"From: Judy <judy@example.test>\r\n")
    assert sec(root, "2.HEADER").endswith(b"boundary=\"orig-b\"\r\n\r\n")
    assert sec(root, "2.1") == b"Gr=FC=DFe vom Original."
    assert sec(root, "2.2.MIME") == b"Content-Type: text/csv; name=data.csv\r\n\r\n"
    assert sec(root, "2.HEADER.FIELDS (Subject)") == b"Subject: the original\r\n\r\n"
    assert sec(root, "2.MIME") == b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
    assert sec(root, "1.HEADER") == b""  # part 1 is not a message
    msg = bs(root)[1]
    assert msg[:2] == [b"message", b"rfc822"]
    assert msg[7][1] == b"the original"         # its ENVELOPE
    assert msg[8][-5] == b"mixed"                # its BODYSTRUCTURE
    _, top = load("12_toplevel_rfc822.eml")
    assert sec(top, "1.HEADER.FIELDS (Subject)") == b"Subject: the inner message\r\n\r\n"
    assert sec(top, "1.1") == b"inner body line 1\r\ninner body line 2\r\n"


def test_digest_parts_default_to_message_rfc822() -> None:
    _, root = load("05_digest.eml")
    s = bs(root)
    assert [p[:2] for p in s[:3]] == [[b"message", b"rfc822"], [b"message", b"rfc822"], [b"text", b"plain"]]


def test_envelope() -> None:
    _, root = load("08_addresses.eml")
    env = parse_values(encode(envelope(root)))[0]
    date, subject, frm, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    assert date == b"Sat, 07 Mar 2020 11:22:33 -0800 (PST)"
    assert frm == [[b"Doe, John", None, b"john.doe", b"example.test"]]
    assert sender == [[b"The Secretary", None, b"secretary", b"example.test"]]
    assert reply_to == [[None, None, b"Replies", None], [None, None, b"r1", b"example.test"],
                        [b"R Two", None, b"r2", b"example.test"], [None, None, None, None]]
    assert to == [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]
    assert cc[0] == [b"Mary Smith", b"@relay1.example,@relay2.example", b"mary", b"example.test"]
    assert cc[2] == [None, None, b"nodomain", b"MISSING_DOMAIN"]
    assert cc[-1] == [b"=?ISO-8859-1?Q?Andr=E9?= Pirard", None, b"PIRARD", b"vm1.ulg.ac.be"]
    assert bcc[-1] == [None, None, b"loose", b"example.test"]
    assert in_reply_to == b"<one@example.test> <two@example.test>"
    assert message_id == b"<addr-8@example.test>"
    # Sender and Reply-To default to From
    _, plain = load("01_plain_lf.eml")
    env = parse_values(encode(envelope(plain)))[0]
    assert env[2] == env[3] == env[4] == [[b"Alice Example", None, b"alice", b"example.test"]]
    assert env[6] is None and env[7] is None


def test_address_edge_cases() -> None:
    assert parse_addresses(b"") == []
    assert parse_addresses(b"a@b, , c@d") == [(None, None, b"a", b"b"), (None, None, b"c", b"d")]
    assert parse_addresses(b'"unterminated <x@y>') == [(None, None, b"MISSING_MAILBOX", b"MISSING_DOMAIN")]


def test_header_only_message() -> None:
    raw, root = load("09_header_only.eml")
    assert sec(root, "HEADER") == raw and sec(root, "TEXT") == b""


def test_hostile_nesting_is_bounded() -> None:
    depth = 5000
    parts = b"".join(b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1) for i in range(depth))
    raw = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n" + parts + b"leaf\r\n"
    root = mimetree.parse(raw)
    assert encode_body(body_structure(root)).startswith(b"((")  # no RecursionError


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.eml")))
def test_every_sample_parses_and_sections_cover_the_message(name: str) -> None:
    raw, root = load(name)
    assert sec(root, "HEADER") + sec(root, "TEXT") == raw
    encode_body(body_structure(root))
    encode(envelope(root))
