"""Issue 6: a folder name reused for other messages (deleted and created again, or renamed over)
never passes the new messages off as the old ones: a session's own parsed-message cache is keyed
by UIDVALIDITY, and a session whose selected folder another session replaced is ended with BYE
(as Dovecot does), like one whose folder was deleted. Both serving modes (tests/imap/test_caches.py's
`srv`). Found by the issue-6 edge tests (helper imap-tests)."""

from __future__ import annotations

import pytest

from imap.test_caches import append, connect, fresh_folder, msg, ok, srv, subjects  # noqa: F401
from imap.wire import fetch_items

pytestmark = pytest.mark.integration


def test_same_session_after_delete_and_create_sees_the_new_message(srv) -> None:
    w = connect(srv)
    fresh_folder(w, "SameSess")
    append(w, "SameSess", msg("old message", "old body\r\n"))
    w.command("SELECT SameSess")
    untagged, _ = w.command("FETCH 1 (BODY.PEEK[])")
    assert b"old body" in fetch_items(untagged[0])["BODY[]"]
    w.command("CLOSE")
    fresh_folder(w, "SameSess")                      # DELETE + CREATE: new UIDVALIDITY
    append(w, "SameSess", msg("new message", "new body\r\n"))
    w.command("SELECT SameSess")
    untagged, _ = w.command("FETCH 1 (BODY.PEEK[])")
    body = fetch_items(untagged[0])["BODY[]"]
    w.close()
    assert b"new body" in body, body


def test_same_session_after_rename_swap_sees_the_right_headers(srv) -> None:
    w = connect(srv)
    for name in ("SsP", "SsQ", "SsT"):
        w.command(f"DELETE {name}")
    for name in ("SsP", "SsQ"):
        w.command(f"CREATE {name}")
        append(w, name, msg(f"{name} only"))
        w.command(f"EXAMINE {name}")
        assert subjects(w) == {1: f"{name} only"}
    w.command("UNSELECT")
    for old, new in (("SsP", "SsT"), ("SsQ", "SsP"), ("SsT", "SsQ")):
        assert ok(w.command(f"RENAME {old} {new}")[1])
    w.command("EXAMINE SsP")
    got = subjects(w)
    w.close()
    assert got == {1: "SsQ only"}


@pytest.mark.parametrize("how", ["delete+create", "rename onto"])
def test_a_selected_folder_replaced_by_another_session_ends_the_selection(srv, how: str) -> None:
    a, b = connect(srv), connect(srv)
    for name in ("Replaced", "Replacement"):
        b.command(f"DELETE {name}")
    b.command("CREATE Replaced")
    append(b, "Replaced", msg("old one"), "\\Flagged")
    append(b, "Replaced", msg("old two"), "\\Flagged")
    untagged, _ = a.command("SELECT Replaced")
    assert b"* 2 EXISTS" in untagged
    if how == "delete+create":
        b.command("DELETE Replaced")
        b.command("CREATE Replaced")
        append(b, "Replaced", msg("NEW"))
    else:
        b.command("CREATE Replacement")
        append(b, "Replacement", msg("NEW"))
        b.command("RENAME Replaced Gone")
        b.command("RENAME Replacement Replaced")
        b.command("DELETE Gone")
    untagged, done = a.command("NOOP")
    a.close()
    b.close()
    assert any(u.startswith(b"* BYE") for u in untagged), untagged
