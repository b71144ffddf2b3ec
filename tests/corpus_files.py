"""Reading messages of ../shared/corpora for the tests that train models on them."""

from __future__ import annotations

from pathlib import Path


def corpus_files(corpora: Path, folder: str, n: int, skip: int = 0) -> list[bytes]:
    """The bytes of the `n` files of `folder` after the first `skip`, in name order."""
    paths = sorted(p for p in (corpora / folder).iterdir() if p.is_file())[skip:skip + n]
    return [p.read_bytes() for p in paths]


def learned_model_dir(d: Path, corpora: Path, n_each: int) -> Path:
    """A model directory `d` that `mailsift learn` semantics taught the first `n_each` messages
    of SpamAssassin's easy_ham and spam (the share tests' starting model)."""
    from mailsift.classifier.learn import Learner

    ham = sorted((corpora / "spamassassin/easy_ham").iterdir())[:n_each]
    spam = sorted((corpora / "spamassassin/spam").iterdir())[:n_each]
    with Learner(d, source=None) as learner:
        learner.learn_labelled([(str(p), p.read_bytes(), "ham") for p in ham]
                               + [(str(p), p.read_bytes(), "spam") for p in spam])
        learner.save()
    return d


def interleaved(model, corpora: Path, n_each: int = 220):  # noqa: ANN001, ANN201
    """`model` taught the first `n_each` of SpamAssassin's easy_ham and spam_2, a ham then a
    spam (the first-day tests' corpora model, before mark_prior); returned for chaining."""
    for h, s in zip(corpus_files(corpora, "spamassassin/easy_ham", n_each),
                    corpus_files(corpora, "spamassassin/spam_2", n_each)):
        model.learn(h, "ham")
        model.learn(s, "spam")
    return model
