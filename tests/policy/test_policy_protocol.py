"""The policy delegation protocol on bytes alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsift.policy.protocol import (MAX_LINE, MalformedRequest, RequestParser, format_reply,
                                      format_request, parse_reply, parse_request)
from policy_helpers import encode, request


def test_one_request_parses_into_its_attributes() -> None:
    attrs = request(sender="bob@sender.test", recipient="alice@example.test")
    assert parse_request(encode(attrs)) == attrs


def test_many_requests_in_any_chunking() -> None:
    data = encode(request(recipient="a@example.test")) + encode(request(recipient="b@example.test"))
    for size in (1, 2, 7, 64, len(data)):
        parser = RequestParser()
        got = []
        for i in range(0, len(data), size):
            got += parser.feed(data[i:i + size])
        assert [r["recipient"] for r in got] == ["a@example.test", "b@example.test"]
        assert not parser.pending


def test_truncated_request_is_pending_not_answered() -> None:
    parser = RequestParser()
    assert parser.feed(b"request=smtpd_access_policy\nsender=a@b\n") == []
    assert parser.pending


def test_crlf_lines_and_empty_values_and_equals_in_value() -> None:
    got = parse_request(b"request=smtpd_access_policy\r\nsender=\r\nccert_subject=CN=x=y\r\n\r\n")
    assert got == {"request": "smtpd_access_policy", "sender": "", "ccert_subject": "CN=x=y"}


def test_unknown_attributes_are_kept_not_refused() -> None:
    got = parse_request(b"request=smtpd_access_policy\nfuture_attribute=42\n\n")
    assert got["future_attribute"] == "42"


def test_non_utf8_value_is_kept_with_replacement() -> None:
    got = parse_request(b"request=smtpd_access_policy\nsender=j\xe9r\xf4me@x.test\n\n")
    assert got["sender"].startswith("j") and got["sender"].endswith("@x.test")


@pytest.mark.parametrize("data, why", [
    (b"request=smtpd_access_policy\njunk without equals\n\n", "without '='"),
    (b"=value\nrequest=smtpd_access_policy\n\n", "bad attribute name"),
    (b"na me=v\nrequest=smtpd_access_policy\n\n", "bad attribute name"),
    (b"request=smtpd_access_policy\nsender=a\0b\n\n", "NUL"),
    (b"sender=a@b\n\n", "without a 'request'"),
    (b"request=something_else\n\n", "unknown request type"),
    (b"\n", "empty request"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "without '='"),
])
def test_malformed_requests_are_refused(data: bytes, why: str) -> None:
    with pytest.raises(MalformedRequest, match=why):
        RequestParser().feed(data)


def test_overlong_line_is_refused_before_it_ends() -> None:
    parser = RequestParser()
    with pytest.raises(MalformedRequest, match="longer than"):
        parser.feed(b"request=smtpd_access_policy\nsender=" + b"a" * (MAX_LINE + 1))


def test_too_many_attributes_or_bytes_are_refused() -> None:
    many = b"request=smtpd_access_policy\n" + b"".join(b"a%d=1\n" % i for i in range(300)) + b"\n"
    with pytest.raises(MalformedRequest, match="attributes"):
        RequestParser().feed(many)
    big = b"request=smtpd_access_policy\n" + b"".join(b"a%d=%s\n" % (i, b"x" * 8000) for i in range(10))
    with pytest.raises(MalformedRequest, match="larger than"):
        RequestParser().feed(big)


def test_requests_before_a_fault_are_not_lost() -> None:
    data = encode(request(recipient="a@example.test")) + b"garbage\n"
    with pytest.raises(MalformedRequest) as info:
        RequestParser().feed(data)
    assert [r["recipient"] for r in info.value.requests] == ["a@example.test"]


def test_reply_format() -> None:
    assert format_reply("DUNNO") == b"action=DUNNO\n\n"
    assert parse_reply(format_reply("DEFER_IF_PERMIT 4.7.1 x")) == "DEFER_IF_PERMIT 4.7.1 x"
    with pytest.raises(ValueError):
        format_reply("DUNNO\nINJECTED")


def test_format_request_round_trips() -> None:
    attrs = request(sender="x@y.test")
    assert parse_request(format_request(attrs)) == attrs
    with pytest.raises(ValueError):
        format_request({"request": "smtpd_access_policy", "sender": "a\nb"})


def test_crlf_split_across_chunks() -> None:
    data = b"request=smtpd_access_policy\r\nsender=a@b.test\r\n\r\n" * 2
    for size in (1, 2, 3, 5):
        parser = RequestParser()
        got = []
        for i in range(0, len(data), size):
            got += parser.feed(data[i:i + size])
        assert got == [{"request": "smtpd_access_policy", "sender": "a@b.test"}] * 2


values = st.text(alphabet=st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)), max_size=40)
names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.dictionaries(names, values, max_size=8), min_size=1, max_size=4),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=20))
def test_any_chunking_gives_the_same_requests(reqs: list[dict[str, str]], cuts: list[int]) -> None:
    reqs = [{"request": "smtpd_access_policy", **r} for r in reqs]
    data = b"".join(format_request(r) for r in reqs)
    parser = RequestParser()
    got: list[dict[str, str]] = []
    pos = 0
    for cut in cuts * (len(data) // max(1, sum(cuts)) + 1):
        got += parser.feed(data[pos:pos + cut])
        pos += cut
        if pos >= len(data):
            break
    got += parser.feed(data[pos:])
    assert got == reqs and not parser.pending


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_only_ever_raise_malformed(data: bytes) -> None:
    parser = RequestParser()
    try:
        for r in parser.feed(data):
            assert r["request"] == "smtpd_access_policy"
    except MalformedRequest:
        pass
