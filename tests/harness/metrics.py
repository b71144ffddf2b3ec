"""Scraping a daemon's /metrics over HTTP, as Prometheus does."""

from __future__ import annotations

import urllib.request

from mailsift.localstack.procs import free_port, tcp_ready  # noqa: F401

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int, host: str = "127.0.0.1") -> Samples:
    """Every sample of http://HOST:PORT/metrics: (name, sorted labels) -> value. The text is
    parsed by prometheus_client's parser, so a malformed exposition fails here."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain"), resp.headers["Content-Type"]
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 when the series does not exist yet (a labelled counter appears
    with its first increment)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


HAM_WORDS = "meeting minutes agenda project budget review schedule report team quarterly".split()
SPAM_WORDS = "winner lottery pills cheap viagra casino prize claim urgent million".split()


def train_small_model(dbpath, each: int = 200) -> None:
    """A model past MIN_LEARNED (200 of each class) from made-up messages, so a test needs no
    corpus; saved through the classifier API like `mailsift learn` saves one."""
    from mailsift.classifier.api import new_model, save_model

    model = new_model()
    for i in range(each):
        for label, words in (("ham", HAM_WORDS), ("spam", SPAM_WORDS)):
            text = " ".join(words[(i + k) % len(words)] for k in range(8))
            raw = (f"From: a{i}@{label}.test\r\nSubject: {words[i % len(words)]} {i}\r\n"
                   f"Message-ID: <{label}-{i}@train.test>\r\n\r\n{text} {i}\r\n").encode()
            model.learn(raw, label)
    save_model(model, dbpath)
