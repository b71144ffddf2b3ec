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
