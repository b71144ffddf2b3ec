"""The header cache's memory bound holds once sessions have memoised HEADER.FIELDS answers on
its entries (found by the issue-6 edge tests: 2.3x the bound for typical headers, 5.2x for small
ones). Measured with tracemalloc, at unit level."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("kind", ["typical", "small"])
def test_header_cache_memory_bound_holds_once_field_answers_are_memoised(kind: str) -> None:
    import gc
    import tracemalloc

    from mailsift.protocols.imap.headercache import HeaderCache, _cost, header_part
    from mailsift.protocols.imap.parser import parse_section
    from mailsift.protocols.imap.sections import section_bytes
    specs = [parse_section(x) for x in ("HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)", "HEADER.FIELDS (SUBJECT)",
                                        "HEADER.FIELDS (DATE FROM)", "HEADER.FIELDS.NOT (RECEIVED)")]
    raw = {"typical": b"Received: from mx.example.org (mx.example.org [192.0.2.1]) by mail.example.test; "
                      b"Mon, 1 Jan 2024 00:00:00 +0000\r\n" * 5 + b"From: a@example.org\r\nTo: b@example.test\r\n"
                      b"Subject: hello\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n",
           "small": b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n"}[kind]
    bound = 2 * 1024 * 1024
    gc.collect()
    tracemalloc.start()
    try:
        cache = HeaderCache(max_bytes=bound)
        for uid in range(bound // _cost(header_part(raw)) + 50):
            part = header_part(raw)
            cache.put(("u", "INBOX", 1, uid), part)
            for spec in specs:  # what a client's listing FETCH makes the session answer from it
                section_bytes(part, spec)
        gc.collect()
        used, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # before the fix: 2.3x (typical) and 5.2x (small), the memo's keys and answers not counted
    assert used < 1.6 * bound, f"{used / bound:.2f} x the bound"
