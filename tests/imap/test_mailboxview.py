"""The selected folder's view (mailboxview.py, pure): a keyword reaches the client in FLAGS and
PERMANENTFLAGS before any FETCH names it, whichever way it entered the view (the listing at
SELECT, a flag change or a new message found by a refresh, this session's own STORE whose
result carries another session's keyword), and only once."""

from __future__ import annotations

import re

from mailsift.protocols.imap.mailboxview import MailboxView
from mailsift.store.listing import MessageInfo


def info(uid: int, *flags: str, modseq: int = 1) -> MessageInfo:
    return MessageInfo(uid, frozenset(flags), 1_700_000_000.0, 100, modseq, f"key{uid}")


def selected(*infos: MessageInfo, readonly: bool = False) -> tuple[MailboxView, list[bytes]]:
    view = MailboxView("INBOX", readonly, 7)
    view.load(infos)
    return view, view.flag_lines()


def announced(lines: list[bytes]) -> tuple[set[str], set[str]]:
    """(FLAGS keywords, PERMANENTFLAGS keywords) of the untagged lines."""
    text = b"".join(lines).decode()
    flags = re.search(r"^\* FLAGS \(([^)]*)\)", text, re.M)
    perm = re.search(r"^\* OK \[PERMANENTFLAGS \(([^)]*)\)\]", text, re.M)
    assert flags and perm, text
    return set(flags.group(1).split()), set(perm.group(1).split())


def test_select_announces_the_defaults_and_every_keyword_in_use() -> None:
    view, lines = selected(info(1, "\\Seen", "Zed"), info(2, "$Label1"))
    flags, perm = announced(lines)
    assert {"\\Seen", "\\Deleted", "$Junk", "$NonJunk", "Junk", "NonJunk", "$Forwarded", "Zed", "$Label1"} <= flags
    assert perm == flags | {"\\*"}
    assert view.keyword_news() == []


def test_read_only_select_permits_nothing() -> None:
    _view, lines = selected(info(1, "Zed"), readonly=True)
    assert lines[1] == b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
    assert "Zed" in announced([lines[0], b"* OK [PERMANENTFLAGS (x)] x\r\n"])[0]


def test_a_flag_change_with_a_new_keyword_is_preceded_by_flags() -> None:
    view, _ = selected(info(1), info(2))
    out = view.apply([info(1), info(2, "$new", "\\Seen", modseq=2)], allow_expunge=False)
    assert out[0].startswith(b"* FLAGS (") and b"$new" in out[0]
    assert out[1].startswith(b"* OK [PERMANENTFLAGS (") and b"$new" in out[1]
    assert out[2].startswith(b"* 2 FETCH (") and b"$new" in out[2]
    assert len(out) == 3
    # told once: the next change naming it comes alone
    out = view.apply([info(1, "$new", modseq=3), info(2, "$new", "\\Seen", modseq=2)], allow_expunge=False)
    assert len(out) == 1 and out[0].startswith(b"* 1 FETCH (")


def test_a_new_message_with_a_new_keyword_is_announced_before_exists() -> None:
    view, _ = selected(info(1))
    out = view.apply([info(1), info(5, "Appended-Kw")], allow_expunge=True)
    assert out[0].startswith(b"* FLAGS (") and b"Appended-Kw" in out[0]
    assert b"* 2 EXISTS\r\n" in out
    assert out.index(b"* 2 EXISTS\r\n") > 1


def test_own_store_result_with_anothers_keyword_queues_an_announcement() -> None:
    # this session's STORE +FLAGS (\Seen) returns the message's whole new flag set, which
    # already holds a keyword another process set (its event not yet here)
    view, _ = selected(info(1), info(2))
    view.update(2, frozenset({"\\Seen", "$fromelsewhere"}), 9)
    news = view.keyword_news()
    assert len(news) == 2 and all(b"$fromelsewhere" in line for line in news)
    assert view.keyword_news() == []
    # system flags never need announcing
    view.update(1, frozenset({"\\Flagged", "\\Answered"}), 10)
    assert view.keyword_news() == []


def test_a_keyword_announced_stays_announced_after_its_last_message_goes() -> None:
    view, _ = selected(info(1, "$once"), info(2))
    view.remove([1])
    view.update(2, frozenset({"$once"}), 5)
    assert view.keyword_news() == []


def test_one_refresh_reports_expunges_flag_changes_and_new_messages_in_order() -> None:
    view, _ = selected(*(info(u) for u in (2, 4, 6, 8, 10)))
    listing = [info(2), info(6, "\\Seen", modseq=3), info(10), info(11), info(12, "\\Flagged")]
    out = view.apply(listing, allow_expunge=True, recent_floor=11)
    # 4 and 8 go (8 is the 3rd once 4 is gone), 6's change is reported at its new number 2
    assert out == [b"* 2 EXPUNGE\r\n", b"* 3 EXPUNGE\r\n", b"* 2 FETCH (UID 6 FLAGS (\\Seen))\r\n",
                   b"* 5 EXISTS\r\n", b"* 1 RECENT\r\n"]
    assert view.uids == [2, 6, 10, 11, 12] and view.recent == {12}
    # unchanged objects: nothing to say; while expunges wait, the gone one stays as a ghost
    assert view.apply(listing, allow_expunge=False) == []
    assert view.apply(listing[1:], allow_expunge=False) == [] and view.ghosts == {2} and view.exists == 5
    assert view.apply(listing[1:], allow_expunge=True) == [b"* 1 EXPUNGE\r\n"] and not view.ghosts


def test_remove_numbers_each_expunge_as_the_client_holds_them() -> None:
    many = [info(u) for u in range(1, 101)]
    for doomed in ([50], [3, 4, 97], list(range(1, 101, 2))):  # few (bisection) and many (one walk)
        view, _ = selected(*many)
        out = view.remove(doomed)
        expect, held = [], list(range(1, 101))
        for uid in sorted(doomed):
            expect.append(b"* %d EXPUNGE\r\n" % (held.index(uid) + 1))
            held.remove(uid)
        assert out == expect and view.uids == held and set(view.state) == set(held)


def test_recent_above_is_every_uid_above_the_floor() -> None:
    view, _ = selected(*(info(u) for u in (2, 3, 5, 8, 13)))
    for floor in (0, 1, 2, 4, 5, 12, 13, 99):
        assert view.recent_above(floor) == {u for u in (2, 3, 5, 8, 13) if u > floor}
    empty, _ = selected()
    assert empty.recent_above(0) == set()
