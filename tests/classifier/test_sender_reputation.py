"""Sender reputation (reputation.py, issue 12): a newsletter corrected once stays in the inbox,
a spam sender's later mail goes to Junk, `learn --forget` and contrary moves take it back, a
forged From through another relay earns nothing, the table is bounded, and the numpy-free
scorer gives the full model's verdicts and reports the clue."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from mailsift.classifier.api import load_model, new_model, save_model
from mailsift.classifier.learn import Learner
from mailsift.classifier.persist import export_state, import_state
from mailsift.classifier.scorer import load_scorer
from mailsift.classifier.tokenize import tokenize_sender
from mailsift.verdict import spam_headers

WEIGHT = 8.0
NEWS = ("From: Daily Alerts <alerts@news.example.com>", "mail.news.example.com", "198.51.100.7")
FORGER = ("From: Daily Alerts <alerts@news.example.com>", "bot.spam-relay.test", "203.0.113.9")
_SENDER_HEADERS = re.compile(rb"^(from|received|sender|reply-to|return-path|list-[a-z]+|errors-to)\s*:",
                             re.I)


def _files(corpora: Path, folder: str, n: int, skip: int = 0) -> list[bytes]:
    return [p.read_bytes() for p in sorted((corpora / folder).iterdir())[skip:skip + n] if p.is_file()]


def _as_sent_by(raw: bytes, sender: tuple[str, str, str], n: int) -> bytes:
    """`raw` with its sender's headers replaced: From, and one Received hop from `relay` into
    this site's MX."""
    head, sep, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = bool(_SENDER_HEADERS.match(line))
        if not skipping:
            kept.append(line)
    from_line, relay, ip = sender
    received = (f"Received: from {relay} ({relay} [{ip}])\n\tby mx.site.example (Postfix) with ESMTP id "
                f"A{n:05d}; Mon, 7 Dec 2026 10:00:00 +0000").encode()
    return b"\n".join([received, from_line.encode(), *kept]) + sep + body


@pytest.fixture(scope="module")
def trained(corpora: Path):  # noqa: ANN201
    """A model that decides (250 ham, 250 spam of one corpus), with the reputation member."""
    model = new_model(sender_weight=WEIGHT)
    for h, s in zip(_files(corpora, "spamassassin/easy_ham", 250), _files(corpora, "spamassassin/spam_2", 250)):
        model.learn(h, "ham")
        model.learn(s, "spam")
    assert model.ready()
    model.reputation.clear()  # the corpus's senders are none of the tests' (and counts read simply)
    return model


@pytest.fixture(scope="module")
def newsletter(trained, corpora: Path) -> list[bytes]:  # noqa: ANN001
    """Issues of one newsletter (newsletters of the corpus's hard ham, sent by NEWS) that the
    trained model files to Junk."""
    issues = [_as_sent_by(raw, NEWS, n) for n, raw in enumerate(_files(corpora, "spamassassin/hard_ham", 120))]
    junked = [raw for raw in issues if trained.verdict(raw).label == "spam"]
    assert len(junked) >= 8, "too few hard ham filed to Junk to make a newsletter of"
    return junked


def _with(model, **settings):  # noqa: ANN001, ANN202
    m = copy.deepcopy(model)
    m.settings = replace(m.settings, **settings)
    m.refresh()
    return m


def test_sender_identity_is_read_with_the_tokens(data_dir: Path) -> None:
    raw = _as_sent_by(b"Subject: hi\n\nhello\n", NEWS, 1).replace(
        b"Subject: hi", b"Subject: hi\nList-Id: Alerts <Alerts.News.example.com>")
    tokens, sender = tokenize_sender(raw)
    assert sender == ("alerts@news.example.com", "alerts.news.example.com", "rdns:example.com")
    assert tokens == tokenize_sender(raw)[0]
    # no sender-side hop: no relay; no From: no address
    assert tokenize_sender(b"From: <A@B.example>\nSubject: x\n\nbody\n")[1] == ("a@b.example", "", "")
    assert tokenize_sender(b"Subject: x\n\nbody\n")[1] == ("", "", "")


def test_a_newsletter_corrected_once_stays_in_the_inbox(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    first, later = newsletter[0], newsletter[1:]
    new, old = _with(trained), _with(trained, sender_weight=0.0)  # old: the model without the member
    for m in (new, old):
        assert m.verdict(first).label == "spam"
        m.learn(first, "ham")  # the user moves it out of Junk
    old_junked = [raw for raw in later if old.verdict(raw).label == "spam"]
    new_junked = [raw for raw in later if new.verdict(raw).label == "spam"]
    assert len(old_junked) >= 3, "the correction alone already keeps the newsletter"
    assert new_junked == []
    v = new.verdict(later[0])
    assert v.clues[0][0] == "sender:history" and v.clues[0][1] < 0
    assert "sender:history -" in "".join(value for _, value in spam_headers(v))


def test_a_spam_sender_learned_once_goes_to_junk(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    """The other way: a sender the site called spam shifts its next mail towards spam."""
    m = _with(trained)
    ham_like = [raw for raw in newsletter if m.spamminess(raw) < 0.999][:2] or newsletter[:2]
    before = m.spamminess(ham_like[1])
    m.learn(ham_like[0], "spam")
    keys = m.sender_keys(ham_like[1])
    assert m.reputation.shift(keys, m.settings.sender_weight, m.settings.sender_prior)[0] > 0
    assert m.spamminess(ham_like[1]) > before


def test_a_forged_from_through_another_relay_earns_nothing(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    m = _with(trained)
    m.learn(newsletter[0], "ham")
    forged = [raw.replace(b"mail.news.example.com", b"bot.spam-relay.test").replace(b"198.51.100.7", b"203.0.113.9")
              for raw in newsletter[1:]]
    assert tokenize_sender(forged[0])[1] == ("alerts@news.example.com", "", "rdns:spam-relay.test")
    assert all(m.sender_shift(raw) == 0.0 for raw in forged)
    assert all(m.sender_shift(raw) < 0 for raw in newsletter[1:])
    without = _with(m, sender_weight=0.0)  # the forged issues score as if the member were off
    labels = [m.verdict(raw).label for raw in forged]
    assert labels == [without.verdict(raw).label for raw in forged] and labels.count("spam") >= 3
    # spam history of the address follows it through any relay
    m.learn(forged[0], "spam")
    m.learn(forged[1], "spam")
    other = _as_sent_by(newsletter[2], ("From: Daily Alerts <alerts@news.example.com>", "x.other.test", "192.0.2.1"), 9)
    assert m.sender_shift(other) > 0


def test_one_contrary_label_does_not_swing_it(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    m = _with(trained)
    for raw in newsletter[:6]:
        m.learn(raw, "ham")
    m.learn(newsletter[6], "spam")  # one recipient calls it spam
    assert m.sender_shift(newsletter[7]) < -0.5 * m.settings.sender_weight


def test_forget_and_contrary_moves_unlearn_it_exactly(trained, newsletter: list[bytes], tmp_path: Path) -> None:  # noqa: ANN001
    db = tmp_path / "db"
    save_model(_with(trained), db)
    first, later = newsletter[0], newsletter[1]
    with Learner(db, source=None) as learner:
        learner.learn_many([("n1", first)], "ham")
        learner.save()
    model = load_model(db)
    assert model.sender_shift(later) < 0 and len(model.reputation) == 3  # addr, dom, from
    with Learner(db, source=None) as learner:  # a contrary move: ham -> spam
        learner.learn_many([("n1", first)], "spam")
        learner.save()
    model = load_model(db)
    assert model.sender_shift(later) > 0
    assert sorted(map(tuple, model.reputation.table.values())) == [(0, 1)] * 3
    with Learner(db, source=None) as learner:  # `mailsift learn --forget`
        assert learner.forget_many([("n1", first)]).forgotten == 1
        learner.save()
    model = load_model(db)
    assert len(model.reputation) == 0 and model.sender_shift(later) == 0.0


def test_forget_through_the_command(trained, newsletter: list[bytes], tmp_path: Path, mailsift_bin: str) -> None:  # noqa: ANN001
    db = tmp_path / "db"
    save_model(_with(trained), db)
    msg = tmp_path / "issue.eml"
    msg.write_bytes(newsletter[0])
    base = [mailsift_bin, "learn", "--dbpath", str(db)]
    subprocess.run([*base, "--ham", str(msg)], check=True, capture_output=True, timeout=300)
    assert load_model(db).sender_shift(newsletter[1]) < 0
    subprocess.run([*base, "--forget", str(msg)], check=True, capture_output=True, timeout=300)
    assert len(load_model(db).reputation) == 0


def test_the_table_is_bounded_and_keeps_the_latest(trained, newsletter: list[bytes], tmp_path: Path) -> None:  # noqa: ANN001
    m = _with(trained, sender_capacity=6)
    m.reputation.capacity = 6
    senders = [_as_sent_by(newsletter[0], (f"From: <user{n}@site{n}.example>", f"mx.site{n}.example", f"192.0.2.{n}"), n)
               for n in range(5)]
    for raw in senders:
        m.learn(raw, "ham")  # three keys each
    assert len(m.reputation) == 6
    assert m.sender_shift(senders[0]) == 0.0 and m.sender_shift(senders[2]) == 0.0
    assert m.sender_shift(senders[3]) < 0 and m.sender_shift(senders[4]) < 0
    save_model(m, tmp_path / "db")
    loaded = load_model(tmp_path / "db")
    assert list(loaded.reputation.table.items()) == list(m.reputation.table.items())  # the same order
    loaded.learn(senders[0], "ham")  # drops the oldest: senders[3]'s keys
    assert loaded.sender_shift(senders[3]) == 0.0 and loaded.sender_shift(senders[4]) < 0
    export_state(m, tmp_path / "backup.npz", [])
    back, _ = import_state(tmp_path / "backup.npz")
    assert list(back.reputation.table.items()) == list(m.reputation.table.items())


def test_a_default_model_starts_with_an_empty_table(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    m = _with(trained)
    m.learn(newsletter[0], "ham")
    assert len(m.reputation)
    m.mark_prior()  # what the corpora taught is not this site's
    assert len(m.reputation) == 0 and m.sender_shift(newsletter[1]) == 0.0


def test_the_scorer_gives_the_models_verdicts(trained, newsletter: list[bytes], corpora: Path, tmp_path: Path) -> None:  # noqa: ANN001
    m = _with(trained)
    m.learn(newsletter[0], "ham")
    m.learn(newsletter[1], "ham")
    spam = _files(corpora, "spamassassin/spam_2", 3, skip=300)
    m.learn(spam[0], "spam")
    save_model(m, tmp_path / "db")
    model, scorer = load_model(tmp_path / "db"), load_scorer(tmp_path / "db")
    assert scorer is not None
    shifted = 0
    for raw in [*newsletter[2:], *spam, *_files(corpora, "spamassassin/easy_ham_2", 20)]:
        a, b = model.verdict(raw), scorer.verdict(raw)
        assert abs(a.probability - b.probability) < 1e-12 and a.clues == b.clues and a.label == b.label
        shifted += any(name == "sender:history" for name, _ in b.clues)
    assert shifted >= len(newsletter) - 2


def test_a_domain_passes_on_good_history_only(trained, newsletter: list[bytes]) -> None:  # noqa: ANN001
    """Another address of a domain the site kept mail from, through the same relay, starts with
    half its good history; spam from one address of a domain does not taint the others."""
    m = _with(trained)
    m.learn(newsletter[0], "ham")
    colleague = ("From: <offers@news.example.com>", NEWS[1], NEWS[2])
    other = _as_sent_by(newsletter[1], colleague, 1)
    assert m.sender_shift(other) == pytest.approx(-0.5 * WEIGHT / 2)
    spammer = _as_sent_by(newsletter[2], ("From: <x9@bulk.example.org>", "relay.bulk.example.org", "192.0.2.77"), 2)
    m.learn(spammer, "spam")
    m.learn(_as_sent_by(newsletter[3], ("From: <x10@bulk.example.org>", "relay.bulk.example.org", "192.0.2.77"), 3), "spam")
    third = _as_sent_by(newsletter[4], ("From: <help@bulk.example.org>", "relay.bulk.example.org", "192.0.2.77"), 4)
    assert m.sender_shift(third) == 0.0
    assert m.sender_shift(_as_sent_by(newsletter[5], ("From: <x9@bulk.example.org>", "relay.bulk.example.org",
                                                      "192.0.2.77"), 5)) == pytest.approx(WEIGHT / 2)


def test_threads_scoring_at_once_each_get_their_senders_shift(trained, newsletter: list[bytes],
                                                               corpora: Path) -> None:  # noqa: ANN001
    """The milter scores from several threads with one model: each verdict uses its own
    message's sender, never the one another thread just tokenised."""
    from concurrent.futures import ThreadPoolExecutor

    m = _with(trained)
    for raw in newsletter[:3]:
        m.learn(raw, "ham")
    others = _files(corpora, "spamassassin/spam", 40, skip=100)
    for raw in others[:20]:
        m.learn(raw, "spam")
    sample = [*newsletter[3:23], *others[20:]] * 3
    expected = [m.verdict(bytes(bytearray(raw))).probability for raw in sample]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads interleave within a verdict, as under load
    try:
        with ThreadPoolExecutor(4) as pool:
            got = list(pool.map(lambda raw: m.verdict(bytes(bytearray(raw))).probability, sample))
    finally:
        sys.setswitchinterval(interval)
    assert got == expected
    assert sum(m.sender_shift(raw) < 0 for raw in newsletter[3:23]) == 20
