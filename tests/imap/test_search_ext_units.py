"""The search-side extensions' pure pieces: ESEARCH lines and sets, what SEARCHRES saves, ..."""

from __future__ import annotations

import pytest

from mailsift.protocols.imap import esearch
from mailsift.protocols.imap.parser import ParseError


def test_return_options() -> None:
    assert esearch.parse_returns(()) == {"ALL"}
    assert esearch.parse_returns(("MIN", "COUNT")) == {"MIN", "COUNT"}
    with pytest.raises(ParseError):
        esearch.parse_returns(("MIN", "PARTIAL"), b"t1")


def test_sequence_sets() -> None:
    assert esearch.sequence_set([5, 1, 2, 3, 9, 10]) == "1:3,5,9:10"
    assert esearch.sequence_set([]) == ""
    assert esearch.sequence_set([3, 1, 2, 4], ordered=True) == "3,1:2,4"
    assert esearch.sequence_set([4, 3, 2], ordered=True) == "4,3,2"


def test_esearch_lines() -> None:
    every = frozenset({"MIN", "MAX", "ALL", "COUNT"})
    assert esearch.response(b"a1", False, every, [2, 3, 4, 7]) == \
        b'ESEARCH (TAG "a1") MIN 2 MAX 7 ALL 2:4,7 COUNT 4'
    assert esearch.response(b"a1", True, every, []) == b'ESEARCH (TAG "a1") UID COUNT 0'
    assert esearch.response(b"a1", True, frozenset({"MIN"}), []) == b'ESEARCH (TAG "a1") UID'
    assert esearch.response(b"a1", False, frozenset({"ALL"}), [1, 2], modseq=9) == \
        b'ESEARCH (TAG "a1") ALL 1:2 MODSEQ 9'
    # ESORT: MIN and MAX are the first and last in sort order
    assert esearch.response(b"s", False, every, [3, 1, 2, 4], ordered=True) == \
        b'ESEARCH (TAG "s") MIN 3 MAX 4 ALL 3,1:2,4 COUNT 4'


def test_what_save_keeps() -> None:
    assert esearch.to_save(frozenset({"SAVE"}), [2, 5, 9]) == [2, 5, 9]
    assert esearch.to_save(frozenset({"SAVE", "MIN"}), [2, 5, 9]) == [2]
    assert esearch.to_save(frozenset({"SAVE", "MIN", "MAX"}), [2, 5, 9]) == [2, 9]
    assert esearch.to_save(frozenset({"SAVE", "MIN", "COUNT"}), [2, 5, 9]) == [2, 5, 9]
    assert esearch.to_save(frozenset({"SAVE", "MAX"}), []) == []
    assert esearch.response(b"t", False, frozenset({"SAVE"}), [1]) is None


def test_dollar_binds_in_search_keys() -> None:
    from mailsift.protocols.imap import searchres
    from mailsift.protocols.imap.parser import SavedResult, SearchKey, parse_command
    key = parse_command(b"t SEARCH OR $ NOT UID $ SEEN").args["key"]
    assert searchres.uses_saved(key)
    bound = searchres.bind_key(key, [7, 3, 4])
    assert not searchres.uses_saved(bound)
    uid_set = searchres.number_set([3, 4, 7])
    assert bound == SearchKey("AND", (SearchKey("OR", (SearchKey("UID", (uid_set,)),
                                                       SearchKey("NOT", (SearchKey("UID", (uid_set,)),)))),
                                      SearchKey("FLAG", ("\\Seen",))))
    assert uid_set.ranges == ((3, 4), (7, 7))
    assert isinstance(parse_command(b"t FETCH $ FLAGS").args["set"], SavedResult)
    assert not SavedResult().contains(1, 10)  # unbound, it names nothing
    with pytest.raises(ParseError):
        parse_command(b"t FETCH 1,$ FLAGS")


@pytest.mark.parametrize("subject, base, reply", [
    (b"Hello", "Hello", False),
    (b"Re: Hello", "Hello", True),
    (b"RE: [list] Re: Hello   world (fwd)", "Hello world", True),
    (b"Hello (fwd) (FWD)  ", "Hello", True),
    (b"[fwd: Hello world]", "Hello world", True),
    (b"[Fwd: Re: [list] x]", "x", True),
    (b"Fwd: Fw: fw[tag]: x", "x", True),
    (b"[PATCH] [v2] fix", "fix", False),       # blobs go while something is left
    (b"[PATCH]", "[PATCH]", False),            # ... and stay when nothing would be
    (b"[a] Re : x", "x", True),                # blobs before a leader; blanks before the colon
    (b"Reply: x", "Reply: x", False),          # `re` must be followed by blanks, a blob or `:`
    (b"re:fix", "fix", True),
    (b"Fw:   Subject\twith\r\n  tabs", "Subject with tabs", True),
    (b"=?utf-8?q?Re=3A_Gr=C3=BC=C3=9Fe?=", "Grüße", True),  # decoded first
    (b"", "", False),
    (None, "", False),
])
def test_base_subject(subject, base, reply) -> None:
    from mailsift.protocols.imap.basesubject import base_subject
    assert base_subject(subject) == (base, reply)


def _views(messages: list[bytes]):
    import datetime as dt
    from mailsift.protocols.imap import mimetree
    from mailsift.protocols.imap.search import MessageView
    day = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
    return [MessageView(i, 10 * i, frozenset(), day - dt.timedelta(hours=i), mimetree.to_crlf(m))
            for i, m in enumerate(messages, 1)]


def test_sort_criteria_and_ties() -> None:
    from mailsift.protocols.imap.sort import sort
    views = _views([
        b"From: Zed <b@x>\nTo: c@x\nSubject: Re: beta\nDate: Tue, 03 Mar 2020 10:00:00 +0200\n\n1\n",
        b"From: a@x\nTo: Ann <d@x>\nSubject: alpha\nDate: Tue, 03 Mar 2020 09:00:00 +0000\n\n22\n",
        b"From: =?utf-8?q?=C3=84rger?= <c@x>\nSubject: [x] Beta\nDate: nonsense\n\n333\n",
        b"Subject: ALPHA\n\n4444\n",
    ])

    def order(*criteria: tuple[str, bool]) -> list[int]:
        return [m.seq for m in sort(views, criteria)]

    assert order(("SUBJECT", False)) == [2, 4, 1, 3]           # ties in sequence order
    assert order(("SUBJECT", True)) == [1, 3, 2, 4]            # ... also when reversed
    assert order(("SUBJECT", False), ("ARRIVAL", True)) == [2, 4, 1, 3]
    assert order(("SUBJECT", False), ("ARRIVAL", False)) == [4, 2, 3, 1]
    # 08:00Z, 09:00Z; the two without a usable Date count by INTERNALDATE (31 Dec 2019)
    assert order(("DATE", False)) == [4, 3, 1, 2]
    assert order(("FROM", False)) == [4, 2, 1, 3]              # local parts: "", a, b, c
    assert order(("DISPLAYFROM", False)) == [4, 2, 3, 1]       # "", a@x, Ärger, Zed
    assert order(("TO", False)) == [3, 4, 1, 2]
    assert order(("DISPLAYTO", False)) == [3, 4, 2, 1]         # "", "", Ann, c@x
    assert order(("SIZE", True)) == [m.seq for m in sorted(views, key=lambda m: -m.size)]
    # what sorting loaded is let go
    assert all(m._top is None and m._root is None for m in views)


def test_blanks_fold_as_dovecot_folds_them() -> None:
    """Measured against Dovecot 2.3.19 (SORT (SUBJECT) and ORDEREDSUBJECT over these subjects):
    a space before a fold leaves two spaces; every other run of blanks leaves one."""
    from mailsift.protocols.imap.basesubject import field_value, normalise
    assert field_value(b"Subject:  a \r\n\tb\r\n") == b"a \r\n\tb"
    assert normalise(field_value(b"Subject: a \r\n\tb\r\n")) == "a  b"
    assert normalise(field_value(b"Subject: a \r\n b\r\n")) == "a  b"
    for raw in (b"Subject: a\r\n\tb\r\n", b"Subject: a  b\r\n", b"Subject: a\tb\r\n", b"Subject: a\r\n b\n"):
        assert normalise(field_value(raw)) == "a b", raw


def test_thread_references_and_orderedsubject() -> None:
    """The RFC 5256 steps on made messages; the expected strings are Dovecot 2.3.19's answers."""
    from mailsift.protocols.imap.thread import format_threads, thread

    def m(subj: str, day: int, refs: str = "", mid: str = "") -> bytes:
        h = f"Subject: {subj}\r\nDate: {day} Aug 2002 10:00:00 +0000\r\n"
        h += f"References: {refs}\r\n" if refs else ""
        h += f"Message-ID: {mid}\r\n" if mid else ""
        return (h + "\r\nx\r\n").encode()

    # a dummy's subject is its earliest child's, wherever the child hangs
    views = _views([m("s1beta", 28, "<x1@t> <y1@t>"), m("s1alpha", 27, "<x1@t>"), m("s1alpha", 29),
                    m("s2beta", 28, "<x2@t>"), m("s2alpha", 27, "<x2@t> <y2@t>"), m("s2alpha", 29),
                    m("s3beta", 28, "<x3@t>"), m("s3alpha", 27, "<x3@t>"), m("s3alpha", 29)])
    assert format_threads(thread(views, "REFERENCES")) == "((2)(1)(3))((5)(4)(6))((8)(7)(9))"
    views = _views([m("ws a b", 1), m("ws a \r\n\tb", 2), m("ws a\r\n\tb", 3), m("ws a \r\n b", 4),
                    m("ws a  b", 5), m("ws a\tb", 6), m("ws a\r\n b", 7)])
    assert format_threads(thread(views, "ORDEREDSUBJECT")) == "(1 (3)(5)(6)(7))(2 4)"
    # a reply chain, a loop, duplicate ids and a reply gathered by subject
    views = _views([m("topic", 1, mid="<a@t>"), m("Re: topic", 2, "<a@t>", "<b@t>"),
                    m("Re: topic", 3, "<a@t> <b@t>", "<c@t>"), m("Re: loop", 4, "<e@t>", "<d@t>"),
                    m("loop", 5, "<d@t>", "<e@t>"), m("Re: topic", 6), m("dup", 7, mid="<f@t>"),
                    m("dup", 8, mid="<f@t>")])
    assert format_threads(thread(views, "REFERENCES")) == "(1 (2 3)(6))(5 4)((7)(8))"
    assert format_threads(thread(views, "REFERENCES"), uid=True) == "(10 (20 30)(60))(50 40)((70)(80))"
    assert format_threads([]) == ""


def test_thread_of_a_deep_chain_is_iterative() -> None:
    """5,000 replies each to the one before: no recursion limit, one thread."""
    from mailsift.protocols.imap.thread import format_threads, thread
    msgs = [f"Subject: c\r\nMessage-ID: <{i}@t>\r\n" .encode()
            + (f"In-Reply-To: <{i - 1}@t>\r\n".encode() if i else b"") + b"\r\nx\r\n" for i in range(5000)]
    text = format_threads(thread(_views(msgs), "REFERENCES"))
    assert text == "(" + " ".join(str(i) for i in range(1, 5001)) + ")"


def test_within_younger_older() -> None:
    import datetime as dt
    from mailsift.protocols.imap.parser import parse_command
    from mailsift.protocols.imap.search import MessageView, search
    now = dt.datetime.now(dt.timezone.utc)
    views = [MessageView(i, i, frozenset(), now - dt.timedelta(seconds=age), b"x")
             for i, age in enumerate([30, 3000, 300000], 1)]

    def run(query: bytes) -> list[int]:
        return [m.seq for m in search(parse_command(b"t SEARCH " + query).args["key"], views)]

    assert run(b"YOUNGER 600") == [1]
    assert run(b"OLDER 600") == [2, 3]
    assert run(b"YOUNGER 86400 OLDER 60") == [2]
    assert run(b"NOT OLDER 1000000") == [1, 2, 3]
    for bad in (b"YOUNGER 0", b"OLDER", b"YOUNGER -5"):
        with pytest.raises(ParseError):
            parse_command(b"t SEARCH " + bad)


def test_preview_snippet_rules() -> None:
    """Dovecot 2.3's snippet rules (each checked against its answers in the differential run)."""
    from mailsift.protocols.imap.preview import MAX_CHARS, snippet
    assert snippet("\r\n  Hello\r\n\r\n  world  \r\n") == "Hello world"
    assert snippet("> quoted\r\nreply\r\n>more\r\nend") == "reply end"
    assert snippet("> only quoted\r\n> text") == "only quoted text"
    assert snippet("a\u00a0 b") == "a\u00a0 b"                 # U+00A0 is no blank
    words = " ".join(["abcd"] * 60)                             # 4 letters + a space each
    assert snippet(words) == words[:MAX_CHARS].rstrip(" ") and len(snippet(words)) == 199
    assert len(snippet("x" * 500)) == MAX_CHARS
    # a blank after quoted text counts against the length and is not shown
    assert snippet("> q\r\n" + "y" * 300) == "y" * (MAX_CHARS - 1)


def test_preview_parts_and_decoding() -> None:
    from mailsift.protocols.imap import mimetree
    from mailsift.protocols.imap.preview import preview

    def pv(raw: bytes) -> str:
        return preview(mimetree.parse(mimetree.to_crlf(raw)))

    assert pv(b"Subject: x\n\nplain body\n") == "plain body"
    assert pv(b"MIME-Version: 1.0\nContent-Type: text/html; charset=iso-8859-1\n"
              b"Content-Transfer-Encoding: quoted-printable\n\n<html><head><title>T</title><style>p {}</style>"
              b"</head><body><!-- c -->Caf=E9 &amp; Bar&nbsp;&#153; & co<br>next</body></html>\n") == \
        "T Caf\u00e9 & Bar\u00a0\u0099 co next"
    assert pv(b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
              b"Content-Type: image/png\n\nxx\n--b\nContent-Type: text/plain\n\ntext\n--b--\n") == ""
    assert pv(b"MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary=b\n\n--b\n"
              b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8gdGhlcmU=\n--b--\n") == "hello there"
    assert pv(b"Subject: x\n\n\xff\xfe 8-bit \xe9\n") == "\ufffd 8-bit \ufffd"


def test_binary_sections() -> None:
    from mailsift.protocols.imap import mimetree
    from mailsift.protocols.imap.binary import UnknownCTE, decode_qp, section
    assert decode_qp(b"Caf=E9 soft=\r\nbreak  \r\nlow=e9 =XY end=") == b"Caf\xe9 softbreak\r\nlow\xe9 =XY end"
    raw = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\n"
           b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\nX-After: 1\r\n\r\n"
           b"Caf=E9\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
           b"AAECAwBhYmM=\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
           b"begin 644 x\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--b--\r\n")
    root = mimetree.parse(raw)
    assert section(root, (1,)) == (b"Caf\xe9", True)
    assert section(root, (2,)) == (b"\x00\x01\x02\x03\x00abc", True)
    assert section(root, (4,)) == (b"Subject: in\r\nContent-Transfer-Encoding: binary\r\n\r\nhi", True)
    assert section(root, (4, 1)) == (b"hi", True)
    assert section(root, (9,)) == (b"", False)
    with pytest.raises(UnknownCTE):
        section(root, (3,))
    with pytest.raises(UnknownCTE):
        section(root, ())  # the whole message holds the x-uuencode part
    plain = mimetree.parse(b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n")
    assert section(plain, ()) == (b"Subject: s\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: binary\r\n\r\nhello", True)
    # without MIME-Version the encoding is undone all the same (as Dovecot does)
    assert section(mimetree.parse(b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n"), (1,)) == (b"hi", True)
    # deep nesting: no recursion limit
    deep = b"MIME-Version: 1.0\r\n" + b"".join(b"Content-Type: message/rfc822\r\n\r\n" for _ in range(3000)) + b"x\r\n"
    assert section(mimetree.parse(deep), ())[0].endswith(b"x\r\n")


def test_session_needs_no_module_the_server_did_not_preload() -> None:
    """The IMAP session is imported at the first connection, after `mailsift serve` dropped root
    (daemon.drop_privileges preloads the standard modules it will need, as the Python
    installation may not be readable by run_as). Every standard module the session and the
    search-side modules import must be loaded by then: `import html` in preview.py broke the
    run_as test of tests/foundation/test_daemon_core.py."""
    import subprocess
    import sys
    code = (
        "import importlib, sys\n"
        "from mailsift.serve import server\n"
        "import mailsift.serve.workers_main\n"
        "for m in server.PRELOAD: importlib.import_module(m)\n"
        "before = set(sys.modules)\n"
        "import mailsift.protocols.imap.session\n"
        "new = sorted(m for m in set(sys.modules) - before if not m.startswith('mailsift'))\n"
        "print(' '.join(new))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [], out
