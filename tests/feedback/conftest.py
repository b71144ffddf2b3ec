"""Fixtures for the feedback tests: real model directories trained from the shared corpora
(200 ham + 200 spam, so the model decides), copied fresh for each test, and a real Store."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

N_TRAIN = 200


def corpus_files(corpora: Path, folder: str, start: int, n: int) -> list[Path]:
    files = sorted(p for p in (corpora / folder).iterdir() if p.is_file())
    return files[start:start + n]


def train(dbpath: Path, ham: list[Path], spam: list[Path]) -> None:
    from mailsift.classifier.learn import Learner

    with Learner(dbpath) as learner:
        learner.learn_labelled([(str(p), p.read_bytes(), "ham") for p in ham]
                               + [(str(p), p.read_bytes(), "spam") for p in spam])
        learner.save()


@pytest.fixture(scope="session")
def training_sets(corpora: Path) -> dict[str, list[Path]]:
    return {"ham": corpus_files(corpora, "spamassassin/easy_ham", 0, N_TRAIN),
            "spam": corpus_files(corpora, "spamassassin/spam", 0, N_TRAIN)}


@pytest.fixture(scope="session")
def good_model_template(tmp_path_factory: pytest.TempPathFactory, training_sets: dict[str, list[Path]]) -> Path:
    d = tmp_path_factory.mktemp("good-model") / "model"
    train(d, training_sets["ham"], training_sets["spam"])
    return d


@pytest.fixture(scope="session")
def inverted_model_template(tmp_path_factory: pytest.TempPathFactory,
                            training_sets: dict[str, list[Path]]) -> Path:
    """A model trained with the labels swapped: it calls ham spam and spam ham."""
    d = tmp_path_factory.mktemp("inverted-model") / "model"
    train(d, training_sets["spam"], training_sets["ham"])
    return d


@pytest.fixture
def good_model(tmp_path: Path, good_model_template: Path) -> Path:
    d = tmp_path / "model"
    shutil.copytree(good_model_template, d)
    return d


@pytest.fixture
def fresh_messages(corpora: Path) -> dict[str, list[bytes]]:
    """Messages the template models never saw (other folders of the same corpus)."""
    return {"ham": [p.read_bytes() for p in corpus_files(corpora, "spamassassin/easy_ham_2", 0, 40)],
            "spam": [p.read_bytes() for p in corpus_files(corpora, "spamassassin/spam_2", 0, 40)]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[object]:
    from mailsift.store.api import Store

    s = Store(tmp_path / "mail")
    yield s
    s.close()
