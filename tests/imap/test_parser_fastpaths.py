"""The parser's fast paths give what the general grammar gives, byte for byte.

Atoms are read with one regex match (`_Tokenizer.atom`) where the general loop
(`_Tokenizer._atom_with_brackets`, which handles sections such as BODY.PEEK[HEADER.FIELDS (A B)])
reads byte by byte; `tokens` reads atoms without `token`'s dispatch; tags, single-number
sequence sets and fetch attributes have shortcuts of their own. Each is checked against the
general form on generated input: the same tokens (or the same error) and the same position.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings, strategies as st

from mailsift.protocols.imap import parser as P
from mailsift.protocols.imap.parser import Atom, ParseError, Token, parse_command

# bytes that matter to the grammar, and a few that do not
ALPHABET = b'aZ09.:,*$%+-~\\[]() {}"<>\r\n\x00\x7f\xe9'
SECTION_PREFIXES = [b"BODY", b"body.peek", b"BINARY", b"BINARY.PEEK", b"binary.size", b"BODYX", b"\\BODY", b""]


def outcome(fn, *args):  # noqa: ANN001, ANN201 - the result, or the error's text and tag
    try:
        return ("ok", fn(*args))
    except ParseError as exc:
        return ("error", str(exc), exc.tag)


class GeneralTokenizer(P._Tokenizer):
    """The general grammar alone: every atom through the byte loop, every token through
    token(), the space rules spelled out as before the fast paths."""

    def atom(self) -> Atom:
        return self._atom_with_brackets()

    def tokens(self, closing: int | None = None) -> list[Token]:
        out: list[Token] = []
        first = True
        while True:
            c = self.peek()
            if c is None:
                if closing is not None:
                    raise self.error("unbalanced parentheses")
                return out
            if closing is not None and c == closing:
                self.pos += 1
                return out
            if not first and not (self.adjacent_lists and c == 0x28 and isinstance(out[-1], list)):
                self.expect_space()
                c = self.peek()
                if c is None or c == 0x20 or (closing is not None and c == closing):
                    raise self.error("unexpected space")
            out.append(self.token())
            first = False


def data_strategy() -> st.SearchStrategy[bytes]:
    piece = st.sampled_from([bytes([b]) for b in ALPHABET] + [b"FLAGS", b"HEADER.FIELDS", b"\\Seen"])
    body = st.lists(piece, max_size=24).map(b"".join)
    short = st.lists(piece, max_size=6).map(b"".join)
    bracketed = st.tuples(st.just(b"["), short, st.just(b"]"), short).map(b"".join)  # a section, or not
    return st.tuples(st.sampled_from(SECTION_PREFIXES), bracketed | body).map(b"".join)


@settings(max_examples=3000, deadline=None)
@given(data_strategy(), st.booleans())
@example(b"BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]", False)
@example(b"BODY[1.2]<0.10>", False)
@example(b"BODY[[x]]", False)
@example(b"BODY[\x00]", False)
@example(b"BODY[\r]", False)
@example(b"a[b]c[", False)
@example(b"\\", False)
@example(b"\\Seen)", False)
@example(b"\xe9t\xe9", False)
@example(b"(a b)(c)", True)
def test_tokens_match_the_general_grammar(data: bytes, adjacent: bool) -> None:
    fast, general = P._Tokenizer(data, b"t", adjacent), GeneralTokenizer(data, b"t", adjacent)
    assert outcome(fast.tokens) == outcome(general.tokens)
    fast, general = P._Tokenizer(data, b"t", adjacent), GeneralTokenizer(data, b"t", adjacent)
    if data and data[0] not in b'("{~ ':  # where an atom may start
        assert outcome(fast.atom) == outcome(general.atom)
        assert fast.pos == general.pos


_OLD_TAG_RE = re.compile(rb"^[\x21-\x7e]+$")


def general_split_tag(data: bytes) -> tuple[bytes | None, bytes]:
    sp = data.find(b" ")
    head = data if sp < 0 else data[:sp]
    if head and _OLD_TAG_RE.match(head) and not any(c in head for c in b'(){%*"\\+'):
        return head, data[sp + 1:] if sp >= 0 else b""
    return None, data


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=12) | st.lists(st.sampled_from([bytes([b]) for b in ALPHABET]), max_size=12).map(b"".join))
@example(b"a1\n")
@example(b"a1\n FETCH")
@example(b"")
def test_tags_match_the_general_rule(data: bytes) -> None:
    assert P.split_tag(data) == general_split_tag(data)


@settings(max_examples=2000, deadline=None)
@given(st.text(alphabet="0123456789:,*$\u0661\u00b2x", max_size=10))
@example("0")
@example("4294967295")
@example("4294967296")
@example("\u0661")
@example("\u00b2")
def test_single_numbers_match_the_general_sequence_set(text: str) -> None:
    got = outcome(P.parse_sequence_set, text, b"t")
    # the general form: the same number as a range n:n parses through the regex path
    general = outcome(P.parse_sequence_set, f"{text}:{text}", b"t") if text.isdigit() else got
    if got[0] == "ok" and general[0] == "ok":
        assert got[1].ranges == general[1].ranges
    else:
        assert got[0] == general[0] == "error"


def test_fetch_attributes_cached_are_the_ones_parsed_and_errors_stay_errors() -> None:
    text = "BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)]"
    assert P.parse_fetch_att(text, b"a") == P._parse_fetch_att(text, b"a")
    assert P.parse_fetch_att(text, b"b") is P.parse_fetch_att(text, b"c")
    for tag in (b"x1", b"x2"):  # a bad attribute fails every time, with its own tag
        with pytest.raises(ParseError) as exc:
            P.parse_fetch_att("BODY[HEADER.FIELDS ()]", tag)
        assert exc.value.tag == tag


def test_the_fetch_attribute_cache_is_bounded() -> None:
    for i in range(P._FETCH_ATT_CACHE_SIZE * 2):
        P.parse_fetch_att(f"BODY.PEEK[HEADER.FIELDS (X-{i})]")
    assert len(P._FETCH_ATT_CACHE) <= P._FETCH_ATT_CACHE_SIZE


def test_the_load_benchmark_commands_parse_as_before() -> None:
    c = parse_command(b"b2 FETCH 1:50 (UID FLAGS BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])")
    assert [a.name for a in c.args["atts"]] == ["UID", "FLAGS", "BODY[]"]
    assert c.args["atts"][2].section == P.Section(text="HEADER.FIELDS", fields=("FROM", "SUBJECT", "DATE"),
                                                  spec="HEADER.FIELDS (FROM SUBJECT DATE)")
    assert c.args["atts"][2].peek
    c = parse_command(b"b6 STORE 42 +FLAGS.SILENT (\\Seen \\deleted)")
    assert (c.args["set"].ranges, c.args["mode"], c.args["silent"], c.args["flags"]) == \
        (((42, 42),), "+", True, ("\\Seen", "\\Deleted"))
    with pytest.raises(ParseError, match="invalid number 0"):
        parse_command(b"b6 FETCH 0 (FLAGS)")
