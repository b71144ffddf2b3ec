from __future__ import annotations

import pytest

from mailsift.store.names import (InvalidName, decode_mutf7, encode_mutf7, folder_dirname, folder_from_dirname,
                                  normalize_folder, normalize_user, split_address)


@pytest.mark.parametrize("bad", ["../etc", "/etc/passwd", "a/../../b", "a\x00b", "..", ".hidden", "a..b", "a.",
                                 "Lists/x", "x\\y", "tab\there", "", "INBOX.child"])
def test_bad_folder_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        normalize_folder(bad)


@pytest.mark.parametrize("bad", ["../x@example.test", "a/b@example.test", "/etc@example.test", "a\x00@example.test",
                                 "alice@../etc", "alice@exa/mple.test", "alice@", "@example.test", "a@b@c",
                                 ".alice@example.test", "al..ice@example.test", "alice@-bad.test",
                                 "alice@example.test\x00"])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidName):
        split_address(bad)


def test_address_detail_and_case() -> None:
    assert split_address("Alice+Lists.Python@Example.TEST") == ("alice", "example.test", "Lists.Python")
    assert normalize_user("Bob@Example.Test") == "bob@example.test"
    assert normalize_user("bob", "example.test") == "bob@example.test"
    with pytest.raises(InvalidName):
        normalize_user("bob")


def test_inbox_is_case_insensitive_and_the_root() -> None:
    assert normalize_folder("inbox") == "INBOX"
    assert folder_dirname("INBOX") == ""
    assert folder_dirname("Lists.python") == ".Lists.python"


@pytest.mark.parametrize("name", ["Entwürfe", "Отправленные", "a&b", "日本語.子", "plain"])
def test_modified_utf7_round_trip(name: str) -> None:
    enc = encode_mutf7(name)
    assert all(0x20 <= ord(c) <= 0x7E for c in enc)
    assert decode_mutf7(enc) == name
    assert folder_from_dirname(folder_dirname(name)) == name


def test_modified_utf7_known_values() -> None:
    # RFC 3501 5.1.3 example
    assert encode_mutf7("~peter/mail/台北/日本語") == "~peter/mail/&U,BTFw-/&ZeVnLIqe-"
    assert encode_mutf7("a&b") == "a&-b"
