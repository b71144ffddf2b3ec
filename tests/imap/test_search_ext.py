"""The search-side extensions over the wire, against a real `mailsift serve`: ESEARCH,
SEARCHRES, SORT, THREAD, ... (the differential tests against Dovecot are in
test_search_ext_differential.py; these check what a comparison cannot: announcements, state
across commands and sessions, bounds)."""

from __future__ import annotations

import re

import pytest

from imap import search_ext_messages as made
from imap.wire import Wire
from mailsift.protocols.imap.parser import format_datetime

pytestmark = pytest.mark.integration

ALICE, ALICE_PW = "alice@example.test", "alice-pw"


@pytest.fixture(scope="module")
def srv(mailsift_bin):
    from imap.conftest import module_server
    yield from module_server(mailsift_bin, {ALICE: ALICE_PW}, prefix="mailsift-sext-")


def connect(srv) -> Wire:
    w = Wire(srv.host, srv.imap_port)
    w.login(ALICE, ALICE_PW)
    return w


def ok(done: bytes) -> bool:
    return re.match(rb"^\S+ OK", done) is not None


def fill(w: Wire, folder: str, messages: list[bytes] | None = None) -> None:
    """A fresh folder holding `messages` (the made ones by default), selected."""
    w.command(f"DELETE {folder}")
    assert ok(w.command(f"CREATE {folder}")[1])
    for i, data in enumerate(made.MESSAGES if messages is None else messages, 1):
        flags, date = made.append_args(i)
        _, done = w.command(f'APPEND {folder} ({flags}) "{format_datetime(date)}" '.encode()
                            + b"{%d+}\r\n" % len(data) + data)
        assert ok(done), done
    assert ok(w.command(f"SELECT {folder}")[1])


def one(w: Wire, command: str, prefix: bytes) -> bytes:
    untagged, done = w.command(command)
    assert ok(done), (command, done)
    lines = [u for u in untagged if u.startswith(prefix)]
    assert len(lines) == 1, (command, untagged)
    return lines[0]


def heard(w: Wire, seq: int) -> None:
    """Wait until w's session knows message `seq` was expunged by another session (which may be
    served by another worker process: its news takes a moment). SEARCH by sequence number never
    reports the EXPUNGE, it only stops matching the message."""
    from harness.procs import wait_for
    wait_for(lambda: w.command(f"SEARCH {seq}")[0] == [b"* SEARCH"], 10, what="the expunge event")


def caps(w: Wire) -> set[str]:
    return set(w.command("CAPABILITY")[0][0].decode().split()[2:])


def test_esearch(srv) -> None:
    w = connect(srv)
    assert "ESEARCH" in caps(w)
    fill(w, "Esearch")
    assert one(w, "SEARCH RETURN (MIN MAX COUNT ALL) 2:5", b"* ESEARCH") == \
        b'* ESEARCH (TAG "w%d") MIN 2 MAX 5 ALL 2:5 COUNT 4' % w.n
    # nothing found: only COUNT; UID SEARCH answers UIDs and says so
    assert one(w, "SEARCH RETURN (MIN MAX COUNT ALL) KEYWORD nosuch", b"* ESEARCH").endswith(b") COUNT 0")
    seen = one(w, "UID SEARCH SEEN", b"* SEARCH").split()[2:]
    line = one(w, "UID SEARCH RETURN (ALL) SEEN", b"* ESEARCH")
    assert line.split()[4:6] == [b"UID", b"ALL"]
    assert sorted(_expand(line.split()[6].decode())) == sorted(int(u) for u in seen)
    # the plain SEARCH answer is unchanged; an unknown option is BAD and the session goes on
    assert one(w, "SEARCH 1:2", b"* SEARCH") == b"* SEARCH 1 2"
    _, done = w.command("SEARCH RETURN (PARTIAL 1:5) ALL")
    assert b" BAD " in done
    # an expunge another session made is not reported during SEARCH; RETURN counts what we see
    other = connect(srv)
    other.command("SELECT Esearch")
    assert ok(other.command("STORE 1 +FLAGS (\\Deleted)")[1]) and ok(other.command("EXPUNGE")[1])
    heard(w, 1)
    untagged, done = w.command("SEARCH RETURN (COUNT) ALL")
    assert ok(done) and not any(b"EXPUNGE" in u for u in untagged)
    gone = {1} | {i for i in range(1, len(made.MESSAGES) + 1) if "\\Deleted" in made.append_args(i)[0]}
    assert untagged[-1].endswith(b"COUNT %d" % (len(made.MESSAGES) - len(gone)))
    w.close()
    other.close()


def _expand(text: str) -> list[int]:
    out: list[int] = []
    for item in text.split(","):
        lo, _, hi = item.partition(":")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def test_searchres(srv) -> None:
    w = connect(srv)
    assert "SEARCHRES" in caps(w)
    fill(w, "Saved")
    # SAVE alone answers nothing but the tagged OK
    untagged, done = w.command("SEARCH RETURN (SAVE) 3:6")
    assert ok(done) and untagged == []
    assert one(w, "UID SEARCH $", b"* SEARCH") == b"* SEARCH 3 4 5 6"
    # STORE, COPY by $; the saved set is per session
    assert ok(w.command("STORE $ +FLAGS.SILENT (Marked)")[1])
    assert one(w, "SEARCH KEYWORD Marked", b"* SEARCH") == b"* SEARCH 3 4 5 6"
    w.command("DELETE SavedCopy")
    assert ok(w.command("CREATE SavedCopy")[1])
    assert b"COPYUID" in w.command("COPY $ SavedCopy")[1]
    assert one(w, "STATUS SavedCopy (MESSAGES)", b"* STATUS").endswith(b"(MESSAGES 4)")
    other = connect(srv)
    assert ok(other.command("SELECT Saved")[1])
    assert one(other, "SEARCH $", b"* SEARCH") == b"* SEARCH"
    # another session expunges 4: the saved set loses it, and $ by sequence number follows
    assert ok(other.command("UID STORE 4 +FLAGS (\\Deleted)")[1])
    assert ok(other.command("UID EXPUNGE 4")[1])
    untagged, done = w.command("NOOP")
    assert b"* 4 EXPUNGE" in untagged
    assert one(w, "UID SEARCH $", b"* SEARCH") == b"* SEARCH 3 5 6"
    lines = [u for u in w.command("FETCH $ (UID)")[0] if b"FETCH" in u]
    assert lines == [b"* 3 FETCH (UID 3)", b"* 4 FETCH (UID 5)", b"* 5 FETCH (UID 6)"]
    # UID EXPUNGE $ expunges exactly the saved messages that are \Deleted: UID 5 now, UID 6
    # since its APPEND (so is UID 14, which is not saved and stays)
    assert "\\Deleted" in made.append_args(6)[0] and "\\Deleted" in made.append_args(14)[0]
    assert ok(w.command("UID STORE 5 +FLAGS.SILENT (\\Deleted)")[1])
    untagged, done = w.command("UID EXPUNGE $")
    assert ok(done) and [u for u in untagged if u.endswith(b"EXPUNGE")] == [b"* 4 EXPUNGE", b"* 4 EXPUNGE"]
    assert one(w, "UID SEARCH DELETED", b"* SEARCH") == b"* SEARCH 14"
    # a new SELECT forgets it
    assert ok(w.command("SELECT Saved")[1])
    assert one(w, "SEARCH $", b"* SEARCH") == b"* SEARCH"
    untagged, done = w.command("FETCH $ (UID)")
    assert ok(done) and not [u for u in untagged if b"FETCH" in u]
    # `$` mixed with numbers is not a sequence set
    assert b" BAD " in w.command("FETCH 1,$ (UID)")[1]
    # an empty folder: nothing saved, FETCH/STORE/COPY $ act on nothing and say OK
    fill(w, "SavedEmpty", [])
    untagged, done = w.command("SEARCH RETURN (SAVE) ALL")
    assert ok(done) and untagged == []
    for command in ("FETCH $ (FLAGS)", "STORE $ +FLAGS (\\Seen)", "COPY $ Saved", "SEARCH $"):
        untagged, done = w.command(command)
        assert ok(done) and not [u for u in untagged if b"FETCH" in u], (command, done)
    w.close()
    other.close()


def test_sort(srv) -> None:
    w = connect(srv)
    assert {"SORT", "SORT=DISPLAY", "ESORT"} <= caps(w)
    fill(w, "Sorted", made.MESSAGES[:4])
    # subjects: "Hello world", "Re: Hello world", "RE: [list] Re: Hello   world (fwd)",
    # "[fwd: Hello world]": one base subject, so sequence order
    assert one(w, "SORT (SUBJECT) UTF-8 ALL", b"* SORT") == b"* SORT 1 2 3 4"
    # dates 10:00Z, 10:00Z (12:00+02), 06:00Z next day, none (INTERNALDATE, the latest)
    assert one(w, "SORT (REVERSE DATE) UTF-8 ALL", b"* SORT") == b"* SORT 4 3 1 2"
    assert one(w, "SORT (DISPLAYFROM) UTF-8 ALL", b"* SORT") == b"* SORT 2 3 4 1"  # amy, "Mo, Jo", x, Zed
    assert one(w, "UID SORT (FROM) US-ASCII NOT 1", b"* SORT") == b"* SORT 2 3 4"
    assert one(w, "SORT RETURN (MIN MAX COUNT ALL) (REVERSE SIZE) UTF-8 ALL", b"* ESEARCH").split()[4:] == \
        [b"MIN", b"2", b"MAX", b"4", b"ALL", b"2:3,1,4", b"COUNT", b"4"]
    untagged, done = w.command("SORT RETURN (SAVE MAX) (DISPLAYFROM) UTF-8 ALL")  # MAX: last in order
    assert ok(done) and untagged == [b'* ESEARCH (TAG "w%d") MAX 1' % w.n]
    assert one(w, "SEARCH $", b"* SEARCH") == b"* SEARCH 1"
    for bad in ("SORT (SUBJECT REVERSE) UTF-8 ALL", "SORT () UTF-8 ALL", "SORT (THREAD) UTF-8 ALL",
                "SORT (SUBJECT) UTF-8", "SORT RETURN (PARTIAL 1:2) (SUBJECT) UTF-8 ALL"):
        assert b" BAD " in w.command(bad)[1], bad
    assert b"NO [BADCHARSET" in w.command("SORT (SUBJECT) KOI8-R ALL")[1]
    # another session expunges message 1: SORT by sequence number does not report it, UID SORT does
    other = connect(srv)
    other.command("SELECT Sorted")
    assert ok(other.command("UID STORE 1 +FLAGS (\\Deleted)")[1]) and ok(other.command("UID EXPUNGE 1")[1])
    heard(w, 1)
    untagged, done = w.command("SORT (SUBJECT) UTF-8 ALL")
    assert ok(done) and b"* SORT 2 3 4" in untagged and not any(b"EXPUNGE" in u for u in untagged)
    untagged, done = w.command("UID SORT (SUBJECT) UTF-8 ALL")
    assert ok(done) and untagged[0] == b"* 1 EXPUNGE" and untagged[-1] == b"* SORT 2 3 4"
    w.close()
    other.close()


def test_thread(srv) -> None:
    w = connect(srv)
    assert {"THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES"} <= caps(w)
    assert "THREAD=REFS" not in caps(w)
    fill(w, "Threads", made.MESSAGES[:6])
    # 1 <- 2 <- 3 by References; 4 "[fwd: Hello world]" joins by subject as a forward;
    # 6 answers 5 by In-Reply-To
    assert one(w, "THREAD REFERENCES UTF-8 ALL", b"* THREAD") == b"* THREAD (5 6)(1 (2 3)(4))"
    assert one(w, "UID THREAD REFERENCES UTF-8 NOT 2", b"* THREAD") == b"* THREAD (5 6)(1 (3)(4))"
    assert one(w, "THREAD ORDEREDSUBJECT UTF-8 ALL", b"* THREAD") == b"* THREAD (5 6)(1 (2)(3)(4))"
    assert one(w, "THREAD REFERENCES UTF-8 KEYWORD nosuch", b"* THREAD") == b"* THREAD"
    for bad in ("THREAD REFS UTF-8 ALL", "THREAD REFERENCES UTF-8", "THREAD (REFERENCES) UTF-8 ALL"):
        assert b" BAD " in w.command(bad)[1], bad
    assert b"NO [BADCHARSET" in w.command("THREAD REFERENCES KOI8-R ALL")[1]
    # no EXPUNGE during THREAD by sequence number
    other = connect(srv)
    other.command("SELECT Threads")
    assert ok(other.command("UID STORE 6 +FLAGS (\\Deleted)")[1]) and ok(other.command("UID EXPUNGE 6")[1])
    heard(w, 6)
    untagged, done = w.command("THREAD REFERENCES UTF-8 ALL")
    assert ok(done) and untagged == [b"* THREAD (5)(1 (2 3)(4))"]
    untagged, done = w.command("UID THREAD ORDEREDSUBJECT UTF-8 ALL")
    assert ok(done) and untagged == [b"* 6 EXPUNGE", b"* THREAD (5)(1 (2)(3)(4))"]
    w.close()
    other.close()


def test_within(srv) -> None:
    """YOUNGER/OLDER against INTERNALDATE: APPENDs dated an hour and a year ago, one dated now."""
    import datetime as dt
    w = connect(srv)
    assert "WITHIN" in caps(w)
    w.command("DELETE Within")
    assert ok(w.command("CREATE Within")[1])
    now = dt.datetime.now(dt.timezone.utc)
    for when in (now - dt.timedelta(days=365), now - dt.timedelta(hours=1), None):
        data = made.MESSAGES[0]
        date = f'"{format_datetime(when)}" ' if when else ""
        assert ok(w.command(f"APPEND Within {date}".encode() + b"{%d+}\r\n" % len(data) + data)[1])
    assert ok(w.command("SELECT Within")[1])
    assert one(w, "SEARCH YOUNGER 600", b"* SEARCH") == b"* SEARCH 3"
    assert one(w, "SEARCH YOUNGER 86400", b"* SEARCH") == b"* SEARCH 2 3"
    assert one(w, "UID SEARCH OLDER 86400", b"* SEARCH") == b"* SEARCH 1"
    assert one(w, "SEARCH RETURN (COUNT) OLDER 600", b"* ESEARCH").endswith(b"COUNT 2")
    assert b" BAD " in w.command("SEARCH YOUNGER 0")[1]
    w.close()


def test_preview(srv) -> None:
    w = connect(srv)
    assert "PREVIEW" in caps(w)
    fill(w, "Previews", made.MESSAGES[:2])
    assert one(w, "FETCH 2 (PREVIEW)", b"* 2 FETCH") == \
        b'* 2 FETCH (PREVIEW "a longer body a longer body a longer body")'
    assert one(w, "UID FETCH 1 (PREVIEW (LAZY) FLAGS)", b"* 1 FETCH").startswith(b'* 1 FETCH (UID 1 PREVIEW "text" FLAGS (')
    # a preview is no read: \Seen stays as it was
    assert b"\\Seen" not in one(w, "FETCH 2 (PREVIEW FLAGS)", b"* 2 FETCH")
    assert b" BAD " in w.command("FETCH 1 (PREVIEW (EAGER))")[1]
    w.close()


def test_binary(srv) -> None:
    w = connect(srv)
    assert "BINARY" in caps(w)
    w.command("DELETE Binary")
    assert ok(w.command("CREATE Binary")[1])
    mime = (b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9\r\n--b\r\n"
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwBhYmM=\r\n"
            b"--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n")
    assert ok(w.command(b"APPEND Binary {%d+}\r\n" % len(mime) + mime)[1])
    # APPEND takes a literal8 (RFC 3516 4.4), NUL included
    assert ok(w.command(b"APPEND Binary ~{10+}\r\nX: y\r\n\r\n\x00z")[1])
    assert ok(w.command("SELECT Binary")[1])
    line = one(w, "FETCH 1 (BINARY.PEEK[2] BINARY.SIZE[2] BINARY.PEEK[1]<1.2>)", b"* 1 FETCH")
    assert line == b"* 1 FETCH (BINARY[2] ~{8}\r\n\x00\x01\x02\x03\x00abc BINARY.SIZE[2] 8 BINARY[1]<1> ~{2}\r\naf)"
    assert one(w, "FETCH 2 (BINARY.PEEK[])", b"* 2 FETCH") == b"* 2 FETCH (BINARY[] ~{10}\r\nX: y\r\n\r\n\x00z)"
    # BINARY.SIZE is the length of the BINARY answer, for every part
    for seq, part in ((1, "1"), (1, "2"), (2, ""), (2, "1")):
        body = one(w, f"FETCH {seq} (BINARY.PEEK[{part}])", b"* %d FETCH" % seq)
        size = one(w, f"FETCH {seq} (BINARY.SIZE[{part}])", b"* %d FETCH" % seq)
        n = int(re.search(rb"\{(\d+)\}", body).group(1))
        assert size.endswith(b" %d)" % n), (seq, part, size)
    # an encoding we cannot undo: NO [UNKNOWN-CTE]; the session goes on
    _, done = w.command("FETCH 1 (BINARY.PEEK[3])")
    assert b"NO [UNKNOWN-CTE]" in done
    assert b"NO [UNKNOWN-CTE]" in w.command("FETCH 1 (BINARY.SIZE[])")[1]
    # BINARY sets \Seen, BINARY.PEEK does not
    assert b"\\Seen" not in one(w, "FETCH 1 (FLAGS)", b"* 1 FETCH")
    untagged, done = w.command("FETCH 1 (BINARY[1])")
    assert ok(done) and b"\\Seen" in b"".join(untagged)
    for bad in ("FETCH 1 (BINARY[1.HEADER])", "FETCH 1 (BINARY.SIZE[1]<0.4>)", "FETCH 1 (BINARY[0])"):
        assert b" BAD " in w.command(bad)[1], bad
    w.close()
