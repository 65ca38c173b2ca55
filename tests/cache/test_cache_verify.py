"""The verifier on its own, and the vector index switching from brute force to HNSW."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thrifty.cache.verify import content_words, verify


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("How do I fix a dripping tap?", "okay so how do i fix a dripping tap"),
        ("How do I report a missed bin collection?", "How do I report a missed bin colection?"),
        ("What's the refund process?", "What is the refunds process?"),
        ("When does the autumn term start?", "When does the autumn term begin?"),
        ("Is there luggage storage at the hotel?", "At the hotel, is there luggage storage?"),
        ("Can't I pay by card?", "Cannot I pay by card?"),
    ],
)
def test_same_question_passes(a: str, b: str) -> None:
    assert verify(a, b).ok, verify(a, b).reason


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ("Is the clinic open on Sundays?", "Is the clinic closed on Sundays?", "words differ"),
        ("What happens if I pay on time?", "What happens if I don't pay on time?", "words differ"),
        ("How much is the Pro plan for 5 users?", "How much is the Pro plan for 50 users?", "words differ"),
        ("How much is the Pro plan for 5 users?", "How much is the Pro plan for five users?", ""),
        ("Call-out at 2pm", "Call-out at 2am", "words differ"),
        ("What's the capital of Australia?", "What's the capital of Austria?", "words differ"),
        ("Flights from Paris to London", "Flights from London to Paris", "word order differs"),
        ("Can I pay by card?", "Can I pay by card or cash?", "words differ"),
        ("What's the check-in time?", "What's the check-out time?", "words differ"),
    ],
)
def test_meaning_changes_fail_with_a_reason(a: str, b: str, why: str) -> None:
    verdict = verify(a, b)
    if not why:
        assert verdict.ok
    else:
        assert not verdict.ok and verdict.reason.startswith(why)


def test_content_words_keep_numbers_and_negation() -> None:
    words = content_words("I don't want 3 tickets for £1,200 on Monday")
    assert words is not None
    stems = [w.stem for w in words]
    assert stems == ["not", "want", "3", "ticket", "£1200", "on", "monday"]


def test_flat_and_hnsw_agree_on_the_nearest_rows() -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("hnswlib")
    from thrifty.cache.vectors import VectorIndex

    rng = np.random.default_rng(7)
    rows = rng.normal(size=(300, 32)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    flat, graph = VectorIndex(hnsw_after=10_000, dim=32), VectorIndex(hnsw_after=100, dim=32)
    for row in rows:
        flat.add(row)
        graph.add(row)
    assert (flat.kind, graph.kind) == ("flat", "hnsw")
    graph.remove(5)
    flat.remove(5)
    for i in (0, 17, 299):
        assert flat.search(rows[i], 1)[0][0] == graph.search(rows[i], 1)[0][0] == i
    assert all(label != 5 for label, _ in graph.search(rows[5], 3))
    assert flat.search(rows[5], 1)[0][1] < 0.999


def test_a_lookup_does_not_wait_behind_a_long_index_rebuild() -> None:
    np = pytest.importorskip("numpy")
    from thrifty.cache.semantic import Question, SemanticIndex

    index = SemanticIndex(lambda texts: None, clock=lambda: 0.0)
    vector = np.ones(384, dtype=np.float32) / np.sqrt(384)
    index.add("p", Question("k", "default", "where is my order", 100.0), vector)
    assert [m.key for m in index.lookup("p", "where is my order", vector, 0.9, True)] == ["k"]
    with index._lock:  # as if a writer were moving the partition to HNSW
        assert index.lookup("p", "where is my order", vector, 0.9, True) == []
    assert index.busy == 1


TRAPS = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "nonlatin_traps.jsonl"


def _traps() -> list[dict[str, Any]]:
    return [json.loads(line) for line in TRAPS.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("pair", _traps(), ids=lambda p: f"{p['lang']}-{p['kind']}-{p['asked'][:12]}")
def test_non_latin_swaps_are_refused_and_trivial_variants_pass(pair: dict[str, Any]) -> None:
    assert verify(pair["asked"], pair["cached"]).ok is pair["same"]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("𓀀𓀁 x", "𓀀𓀁 x"),  # Egyptian hieroglyphs: a script the verifier does not know
        ("ᚠᚢᚦ", "ᚠᚢᚦ"),  # runes
        ("???", "!!!"),  # no words at all
    ],
)
def test_text_it_cannot_analyse_is_refused_not_passed(a: str, b: str) -> None:
    assert not verify(a, b).ok


def test_digits_of_any_script_compare_as_numbers() -> None:
    assert verify("Order ٣ books", "order 3 books").ok
    assert not verify("Order ٣ books", "order 5 books").ok
    assert verify("कुत्ते क्या खाते हैं?", "कुत्ते क्या खाते हैं").ok
    assert not verify("कि", "का").ok  # a vowel sign is part of the word
