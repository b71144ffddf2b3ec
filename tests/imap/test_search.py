"""SEARCH keys evaluated over message bytes, flags and dates (pure)."""

import datetime as dt
from pathlib import Path

from mailsift.protocols.imap import mimetree
from mailsift.protocols.imap.parser import parse_command
from mailsift.protocols.imap.search import MessageView, decode_words, search

DATA = Path(__file__).resolve().parent.parent / "data" / "imap"
TZ = dt.timezone(dt.timedelta(hours=2))


def view(seq: int, name: str, flags: str = "", day: int = 1, recent: bool = False) -> MessageView:
    raw = mimetree.to_crlf((DATA / name).read_bytes())
    return MessageView(seq, seq * 10, frozenset(flags.split()), dt.datetime(2020, 3, day, 23, 30, tzinfo=TZ),
                       raw, recent=recent)


MSGS = [view(1, "01_plain_lf.eml", "\\Seen", 1, recent=True), view(2, "02_alternative.eml", "$Junk", 2),
        view(3, "03_nested_attachment.eml", "\\Flagged \\Seen", 3), view(4, "04_forwarded_rfc822.eml", "", 4, True),
        view(5, "08_addresses.eml", "\\Deleted", 5)]


def run(query: bytes) -> list[int]:
    key = parse_command(b"t SEARCH " + query).args["key"]
    return [m.seq for m in search(key, MSGS)]


def test_flags_and_recent() -> None:
    assert run(b"SEEN") == [1, 3]
    assert run(b"UNSEEN") == [2, 4, 5]
    assert run(b"NEW") == [4]
    assert run(b"OLD") == [2, 3, 5]
    assert run(b"KEYWORD $junk") == [2]
    assert run(b"DELETED") == [5] and run(b"UNDELETED") == [1, 2, 3, 4]


def test_sequence_and_uid_sets() -> None:
    assert run(b"2:3") == [2, 3]
    assert run(b"*") == [5]
    assert run(b"UID 20:40") == [2, 3, 4]
    assert run(b"UID *") == [5]


def test_headers_decode_encoded_words_and_ignore_case() -> None:
    assert run(b"CHARSET UTF-8 SUBJECT {7}\r\nGR\xc3\x9c\xc3\x9fE") == [2]  # =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
    assert run(b"FROM CAROL") == [2]
    assert run(b'HEADER Content-Disposition ""') == []  # only MIME parts have it, not the message
    assert run(b'HEADER In-Reply-To ""') == [2, 5]
    assert decode_words(b"=?ISO-8859-1?Q?Andr=E9?= =?UTF-8?B?UGlyYXJk?=") == "AndréPirard"


def test_body_is_decoded_and_text_includes_headers() -> None:
    assert run(b"CHARSET UTF-8 BODY {7}\r\nStra\xc3\x9fe") == [2]  # quoted-printable decoded
    assert run(b"BODY Gr=C3") == []                                # ... so the raw form does not match
    assert run(b"BODY vom") == [4]                                 # inside a message/rfc822 part
    assert run(b"BODY Judy") == []                                 # its header is not BODY ...
    assert run(b"TEXT Judy") == [4]                                # ... but is TEXT
    assert run(b"TEXT quarterly") == [3]                           # MIME part headers are TEXT too
    assert run(b"BODY JVBERi0") == []                              # non-text parts are not searched


def test_dates_and_sizes() -> None:
    # internal dates are 23:30 +0200: the day is taken in the date's own zone
    assert run(b"ON 3-Mar-2020") == [3]
    assert run(b"BEFORE 3-Mar-2020") == [1, 2]
    assert run(b"SINCE 4-Mar-2020") == [4, 5]
    assert run(b"SENTON 2-Mar-2020") == [1]
    assert run(b"SENTSINCE 5-Mar-2020") == [4, 5]
    sizes = {m.seq: m.size for m in MSGS}
    assert run(b"LARGER %d" % sizes[3]) == [s for s, n in sizes.items() if n > sizes[3]]
    assert run(b"SMALLER %d" % sizes[1]) == [s for s, n in sizes.items() if n < sizes[1]]


def test_boolean_combinations() -> None:
    assert run(b"OR SEEN DELETED") == [1, 3, 5]
    assert run(b"NOT (SEEN FLAGGED)") == [1, 2, 4, 5]
    assert run(b"SEEN NOT FLAGGED") == [1]
    assert run(b"OR (1 SEEN) (5 DELETED)") == [1, 5]
