"""Messages made for the search-side extensions (ESEARCH, SORT, THREAD, WITHIN, ...): subjects
that base subject extraction (RFC 5256 2.1) must take apart, addresses for FROM/TO/CC and
DISPLAYFROM/DISPLAYTO, sent dates in several zones or missing, and References/In-Reply-To
chains with gaps, cycles and duplicate Message-IDs for THREAD=REFERENCES."""

from __future__ import annotations

import datetime as dt


def _msg(subject: str | None, frm: str | None = "a@example.test", to: str | None = None,
         cc: str | None = None, date: str | None = None, mid: str | None = None,
         refs: str | None = None, irt: str | None = None, body: str = "text\r\n") -> bytes:
    lines = []
    for name, value in (("From", frm), ("To", to), ("Cc", cc), ("Subject", subject), ("Date", date),
                        ("Message-ID", mid), ("References", refs), ("In-Reply-To", irt)):
        if value is not None:
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n" + body).encode("utf-8")


MESSAGES: list[bytes] = [
    _msg("Hello world", "Zed Zulu <zed@b.test>", "amy@x.test", "Bob <bob@c.test>",
         "Tue, 03 Mar 2020 10:00:00 +0000", "<m1@t>"),
    _msg("Re: Hello world", "amy@b.test", "Zoe <zoe@x.test>", None,
         "Tue, 03 Mar 2020 12:00:00 +0200", "<m2@t>", "<m1@t>", "<m1@t>", body="a longer body\r\n" * 3),
    _msg("RE: [list] Re: Hello   world (fwd)", '"Mo, Jo" <mo@b.test>', "bo@x.test", "carl@c.test",
         "Wed, 04 Mar 2020 01:00:00 -0500", "<m3@t>", "<m1@t> <m2@t>"),
    _msg("[fwd: Hello world]", "x@b.test", None, None, None, "<m4@t>"),
    _msg("=?utf-8?q?Gr=C3=BC=C3=9Fe?= aus Bern", "=?utf-8?q?J=C3=BCrg?= <jurg@b.test>",
         "=?iso-8859-1?q?=C9mile?= <emile@x.test>", None, "Mon, 02 Mar 2020 09:00:00 +0100", "<m5@t>"),
    _msg("Fwd: Re: Grüße aus Bern", "adam@b.test", "Undisclosed:;", None,
         "Mon, 02 Mar 2020 09:00:00 +0100", "<m6@t>", None, "<m5@t>"),
    _msg("[PATCH] [v2] fix", "dev@b.test", "list@x.test", None, "Thu, 05 Mar 2020 08:00:00 +0000", "<m7@t>"),
    _msg("[PATCH]", "dev@b.test", "list@x.test", None, "Thu, 05 Mar 2020 08:30:00 +0000", "<m8@t>"),
    _msg("re:fix", "Dev <dev@b.test>", "list@x.test", None, "Thu, 05 Mar 2020 09:00:00 +0000", "<m9@t>",
         "<m7@t> <missing@t>"),
    _msg(None, None, None, None, "garbage date", None),
    _msg("", "empty@b.test", "", None, "Fri, 06 Mar 2020 00:00:00 +0000", "<m11@t>"),
    _msg("Re: Re: Re: loop", "l@b.test", None, None, "Sat, 07 Mar 2020 10:00:00 +0000", "<m12@t>", "<m13@t>"),
    _msg("Re: loop", "l@b.test", None, None, "Sat, 07 Mar 2020 11:00:00 +0000", "<m13@t>", "<m12@t>"),
    _msg("dup id", "d@b.test", None, None, "Sun, 08 Mar 2020 10:00:00 +0000", "<dup@t>"),
    _msg("dup id", "d@b.test", None, None, "Sun, 08 Mar 2020 09:00:00 +0000", "<dup@t>"),
    _msg("Re: dup id", "d@b.test", None, None, "Sun, 08 Mar 2020 11:00:00 +0000", "<m16@t>", "<dup@t>"),
    _msg("Fw:   Subject\twith  tabs", "tab@b.test", "Tab <tab@x.test>", None,
         "Mon, 09 Mar 2020 10:00:00 +0000", "<m17@t>"),
    _msg("subject with tabs", "tab@b.test", None, None, "Mon, 09 Mar 2020 09:00:00 +0000", "<m18@t>"),
    _msg("Late child", "c@b.test", None, None, "Tue, 10 Mar 2020 10:00:00 +0000", "<m19@t>",
         "<gone1@t> <gone2@t>"),
    _msg("Other late child", "c@b.test", None, None, "Tue, 10 Mar 2020 09:00:00 +0000", "<m20@t>",
         "<gone1@t> <gone3@t>"),
]

FLAGS = ["\\Seen", "", "\\Flagged", "\\Seen \\Answered", "$Junk", "", "\\Deleted", "\\Seen"]
BASE = dt.datetime(2020, 3, 10, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


def append_args(i: int) -> tuple[str, dt.datetime]:
    """Flags and INTERNALDATE of the i-th appended message (1-based); the dates run backwards
    and repeat, so ARRIVAL is neither the append order nor free of ties."""
    return FLAGS[i % len(FLAGS)], BASE - dt.timedelta(hours=7 * (i % 11))
