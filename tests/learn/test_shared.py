"""Two learning layers on one real Redis learn as one: experiments, overrides and knowledge are shared."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thrifty.learn.layer import LearningLayer
from thrifty.learn.settings import LearnSettings
from thrifty.observe.feedback import Signal
from thrifty.testing import FakeBackend, chat
from thrifty.types import ChatRequest, message_text

from .conftest import words


def graded(request: ChatRequest) -> str:
    return "simple" if "simply" in message_text(request.messages[-1]) else "dense"


def ask(text: str, user: str = "u1", owner: str = "key-a") -> ChatRequest:
    request = chat(text, model="fast")
    request.trace.user, request.trace.key_id = user, owner
    return request


def rate(request: ChatRequest, rating: int, comment: str | None = None) -> Signal:
    return Signal(request.trace.request_id, rating, owner=request.trace.key_id, comment=comment)


@pytest.fixture
async def pair(
    settings: LearnSettings, redis_url: str, tmp_path: Any, request: pytest.FixtureRequest
) -> AsyncIterator[list[LearningLayer]]:
    changes = getattr(request, "param", {})
    layers = []
    for name in ("a", "b"):
        path = str(tmp_path / f"{name}.sqlite3")
        shared = dataclasses.replace(settings, redis_url=redis_url, path=path, **changes)
        layer = LearningLayer(FakeBackend(graded), "fast", shared, words)
        await layer.start()
        layers.append(layer)
    yield layers
    for layer in layers:
        await layer.aclose()


async def settle(*layers: LearningLayer) -> None:
    """What the request path queued is sent, and every layer has read the stream."""
    for layer in layers:
        await layer.journal.flush()
    for layer in layers:
        await layer.refresh()


async def test_a_rating_on_one_replica_changes_what_the_other_serves(pair: list[LearningLayer]) -> None:
    a, b = pair
    first = ask("Explain microservices")
    await a.complete(first)
    await settle(a, b)
    # the rating reaches b, which did not serve the request: b finds it in Redis
    learned = await b.on_signal(rate(first, 2, "too complex, I need concrete examples"))
    assert learned is not None and learned["proposed"] == "simplify_examples"
    await settle(a, b)
    again = ask("Explain microservices please")
    await a.complete(again)  # a serves the user's override that b learned
    assert again.trace.variant is not None
    assert (again.trace.variant.variant, again.trace.variant.source) == ("simplify_examples", "user")
    assert a.report("key-a") == b.report("key-a")


@pytest.mark.parametrize("pair", [{"knowledge": "off"}], indirect=True)
async def test_both_replicas_promote_the_same_variant_from_ratings_spread_over_them(
    pair: list[LearningLayer],
) -> None:
    a, b = pair
    seed = ask("Explain microservices", user="seed")
    await a.complete(seed)
    await a.on_signal(rate(seed, 2, "too complex"))
    await settle(a, b)
    decision = None
    for i in range(200):
        layer = pair[i % 2]
        request = ask("Explain microservices", user=f"user{i}")
        reply = await layer.complete(request)
        learned = await layer.on_signal(rate(request, 5 if reply.text == "simple" else 2))
        decision = (learned or {}).get("decision")
        if decision:
            break
    assert decision == "promoted"
    await settle(a, b)
    assert a.report("key-a") == b.report("key-a")
    [experiment] = b.report("key-a")["experiments"]
    assert experiment["champion"] == "simplify_examples"
    assert a.counts["promoted"] == b.counts["promoted"] == 1
    late = ask("Explain microservices", user="newcomer")
    await b.complete(late)
    assert late.trace.variant is not None and late.trace.variant.variant == "simplify_examples"


async def test_a_good_answer_learned_on_one_replica_is_a_hit_on_the_other(pair: list[LearningLayer]) -> None:
    a, b = pair
    first = ask("How do I reset my password?")
    await a.complete(first)
    await a.on_signal(rate(first, 5))
    await settle(a, b)
    hit = ask("How do I reset my password?", user="u2")
    await b.complete(hit)
    assert hit.trace.variant is not None and hit.trace.variant.knowledge == "hit"
    other = ask("How do I reset my password?", user="u2", owner="key-b")
    await b.complete(other)
    assert other.trace.variant is not None and other.trace.variant.knowledge == ""
    # rated badly on b, the entry is gone on a too
    await b.on_signal(rate(hit, 1, "wrong"))
    await settle(a, b)
    again = ask("How do I reset my password?", user="u3")
    await a.complete(again)
    assert again.trace.variant is not None and again.trace.variant.knowledge == ""


async def test_without_redis_a_replica_learns_alone_and_says_so(settings: LearnSettings) -> None:
    from tests.processes import free_port

    down = dataclasses.replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    layer = LearningLayer(FakeBackend(graded), "fast", down, words)
    await layer.start()
    try:
        assert layer.degraded() and "Redis" in layer.degraded()[0]
        first = ask("Explain microservices")
        await layer.complete(first)
        learned = await layer.on_signal(rate(first, 2, "too long"))
        assert learned is not None and learned["proposed"] == "concise"
        again = ask("Explain microservices")
        await layer.complete(again)
        assert again.trace.variant is not None and again.trace.variant.variant == "concise"
    finally:
        await layer.aclose()


async def test_an_event_published_at_once_follows_the_ones_queued_before_it(redis_url: str) -> None:
    """A rating's event must not overtake the context it refers to: other replicas fold in order."""
    import uuid

    from thrifty.learn.journal import RedisJournal

    seen: list[Any] = []
    prefix = f"thrifty:test:{uuid.uuid4().hex}:"
    writer = RedisJournal(redis_url, prefix, lambda e: None)
    reader = RedisJournal(redis_url, prefix, seen.append)
    try:
        writer.post({"kind": "context", "n": 1})  # queued, flushed a little later
        await writer.publish([{"kind": "override", "n": 2}])  # sent now
        await reader.catch_up()
        assert [e["n"] for e in seen] == [1, 2]
    finally:
        await writer.aclose()
        await reader.aclose()
