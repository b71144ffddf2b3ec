"""Verdict -> headers in SpamAssassin's formats (the only formatter of X-Spam-*/X-Virus-*)."""

from __future__ import annotations

import email

from mailsift.verdict import (Verdict, VirusResult, bayes_rule, is_verdict_header, untrusted_name,
                              verdict_headers)


def _headers(v: Verdict) -> dict[str, str]:
    return dict(verdict_headers(v, version="9.9").headers)


def test_spam_headers_match_spamassassin_format() -> None:
    h = _headers(Verdict(0.995, 7.34, clues=(("url:cheap.test", 3.2), ("hdr:from:friend", -1.5))))
    assert h["X-Spam-Flag"] == "YES"
    assert h["X-Spam-Score"] == "7.3"
    assert h["X-Spam-Level"] == "*******"
    assert h["X-Spam-Status"] == "Yes, score=7.3 required=5.0 tests=BAYES_99 autolearn=no version=mailsift-9.9"
    assert "url:cheap.test +3.20" in h["X-Spam-Report"]
    assert "hdr:from:friend -1.50" in h["X-Spam-Report"]


def test_ham_has_no_flag_and_negative_score_no_stars() -> None:
    h = _headers(Verdict(0.001, -3.0))
    assert "X-Spam-Flag" not in h
    assert h["X-Spam-Level"] == ""
    assert h["X-Spam-Status"].startswith("No, score=-3.0 required=5.0 tests=BAYES_00 ")


def test_unsure_is_not_flagged_and_says_so() -> None:
    v = Verdict(0.7, 6.0, unsure=True)
    assert v.label == "unsure" and not v.is_spam
    assert "MAILSIFT_UNSURE" in _headers(v)["X-Spam-Status"]


def test_no_model_is_unknown() -> None:
    h = _headers(Verdict(None, 0.0, reason="no model"))
    assert list(h) == ["X-Spam-Status"]
    assert h["X-Spam-Status"].startswith("Unknown")


def test_virus_headers() -> None:
    inf = _headers(Verdict(0.1, 0.0, virus=VirusResult("infected", name="Eicar-Signature")))
    assert inf["X-Virus-Scanned"] == "mailsift 9.9 (clamd)"
    assert inf["X-Virus-Status"] == "Infected (Eicar-Signature)"
    un = _headers(Verdict(0.1, 0.0, virus=VirusResult("unscanned", reason="clamd unreachable")))
    assert un["X-Virus-Status"] == "Unscanned (clamd unreachable)"
    assert _headers(Verdict(0.1, 0.0, virus=VirusResult("clean")))["X-Virus-Status"] == "Clean"


def test_headers_parse_back_and_cannot_be_split_by_hostile_tokens() -> None:
    v = Verdict(0.999, 12.0, clues=(("evil\r\nX-Spam-Flag: NO", 5.0),))
    raw = verdict_headers(v).as_bytes() + b"\r\nbody\r\n"
    msg = email.message_from_bytes(raw)
    assert msg.get_all("X-Spam-Flag") == ["YES"]


def test_bayes_bands() -> None:
    assert bayes_rule(0.0) == "BAYES_00"
    assert bayes_rule(0.5) == "BAYES_50"
    assert bayes_rule(0.9995) == "BAYES_999"


def test_incoming_verdict_headers_are_recognised() -> None:
    assert is_verdict_header("X-Spam-Flag")
    assert is_verdict_header("x-virus-status")
    assert not is_verdict_header("X-Spam-Flag-Untrusted")
    assert not is_verdict_header("Subject")
    assert untrusted_name("X-Spam-Flag") == "X-Spam-Flag-Untrusted"


def test_stars_follow_the_score_as_shown() -> None:
    h = _headers(Verdict(0.999, 9.96))
    assert h["X-Spam-Score"] == "10.0"
    assert h["X-Spam-Level"] == "*" * 10
