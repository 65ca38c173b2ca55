"""The learning layer over a scripted backend: the seed's example, implicit signals, knowledge, owners."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thrifty.learn.layer import LearningLayer
from thrifty.learn.settings import LearnSettings
from thrifty.observe.feedback import Signal
from thrifty.testing import FakeBackend, chat
from thrifty.types import ChatRequest, message_text, parsed, trace_notes

from .conftest import words


def answer(request: ChatRequest) -> str:
    return "Answer to: " + " | ".join(message_text(m) for m in request.messages)


@pytest.fixture
async def layer(settings: LearnSettings) -> AsyncIterator[LearningLayer]:
    learner = LearningLayer(FakeBackend(answer), "fast", settings, words)
    await learner.start()
    yield learner
    await learner.aclose()


def ask(text: str, user: str = "u1", owner: str = "key-a", **params: Any) -> ChatRequest:
    request = chat(text, model="fast", **params)
    request.trace.user, request.trace.key_id = user, owner
    return request


def rate(request: ChatRequest, rating: int, comment: str | None = None, **kw: Any) -> Signal:
    return Signal(request.trace.request_id, rating, owner=request.trace.key_id, comment=comment, **kw)


def backend_of(layer: LearningLayer) -> FakeBackend:
    inner = layer.inner
    assert isinstance(inner, FakeBackend)
    return inner


async def test_the_seed_example_end_to_end(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    assert first.trace.variant is not None and first.trace.variant.variant == "baseline"
    learned = await layer.on_signal(rate(first, 2, "too complex, I need concrete examples"))
    assert learned is not None
    assert learned["reasons"] == ["too_complex", "missing_examples"]
    assert learned["proposed"] == "simplify_examples"

    again = ask("Explain microservices please")  # the same user, a similar question
    reply = await layer.complete(again)
    sent = backend_of(layer).requests[-1]
    assert message_text(sent.messages[-1]) == "Explain microservices please simply with practical examples"
    assert "simply with practical examples" in reply.text
    assert trace_notes(again.trace)["variant"].startswith("simplify_examples ")
    assert "source=user" in trace_notes(again.trace)["variant"]
    assert (
        again.messages[-1]["content"] == "Explain microservices please"
    )  # the client's request is untouched

    # the user likes it: the override stays; another key's user is not affected
    await layer.on_signal(rate(again, 4, "much better, thanks"))
    third = ask("Explain microservices")
    await layer.complete(third)
    assert third.trace.variant is not None and third.trace.variant.variant == "simplify_examples"
    stranger = ask("Explain microservices", user="u1", owner="key-b")
    await layer.complete(stranger)
    assert message_text(backend_of(layer).requests[-1].messages[-1]) == "Explain microservices"


async def test_a_bad_rating_of_the_users_own_variant_drops_it(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    await layer.on_signal(rate(first, 2, "too long"))
    second = ask("Explain microservices")
    await layer.complete(second)
    assert second.trace.variant is not None and second.trace.variant.variant == "concise"
    await layer.on_signal(rate(second, 1))
    third = ask("Explain microservices")
    await layer.complete(third)
    assert third.trace.variant is not None and third.trace.variant.source != "user"


async def test_the_context_test_promotes_a_variant_other_users_then_get(settings: LearnSettings) -> None:
    def graded(request: ChatRequest) -> str:
        return "simple" if "simply" in message_text(request.messages[-1]) else "dense"

    layer = LearningLayer(
        FakeBackend(graded), "fast", dataclasses.replace(settings, max_share=0.5, knowledge="off"), words
    )
    await layer.start()
    try:
        seed = ask("Explain microservices", user="seed")
        await layer.complete(seed)
        await layer.on_signal(rate(seed, 2, "too complex"))
        decision = None
        for i in range(200):
            request = ask("Explain microservices", user=f"user{i}")
            reply = await layer.complete(request)
            learned = await layer.on_signal(rate(request, 5 if reply.text == "simple" else 2))
            decision = (learned or {}).get("decision")
            if decision:
                break
        assert decision == "promoted"
        late = ask("Explain microservices", user="newcomer")
        await layer.complete(late)
        assert late.trace.variant is not None
        assert (late.trace.variant.variant, late.trace.variant.source) == ("simplify_examples", "promoted")
        assert layer.report("key-a")["experiments"][0]["champion"] == "simplify_examples"
        assert layer.report("key-b")["experiments"] == []
    finally:
        await layer.aclose()


async def test_regenerate_and_rephrase_count_against_the_previous_answer(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    await layer.on_signal(rate(first, 3))  # starts the context's record
    [exp] = layer.experiments.values()
    losses = exp.arms["baseline"].losses
    await layer.complete(ask("Explain microservices"))  # the same request again: a regenerate
    assert exp.arms["baseline"].losses == pytest.approx(losses + 0.5)
    await layer.complete(ask("explain microservices."))  # a near-duplicate: a rephrase
    assert exp.arms["baseline"].losses == pytest.approx(losses + 1.0)
    await layer.complete(ask("Explain microservices", user="u2"))  # another user: no signal
    await layer.complete(ask("What is the capital of France?"))  # a new question: no signal
    assert exp.arms["baseline"].losses == pytest.approx(losses + 1.0)
    assert layer.counts["implicit"] == 2


async def test_a_good_answer_becomes_a_knowledge_hit_for_its_owner_only(layer: LearningLayer) -> None:
    first = ask("How do I reset my password?")
    await layer.complete(first)
    await layer.on_signal(rate(first, 5, "perfect"))
    calls = len(backend_of(layer).requests)
    hit = ask("How do I reset my password?", user="u9")
    reply = await layer.complete(hit)
    assert reply.text == "Answer to: How do I reset my password?"
    assert len(backend_of(layer).requests) == calls  # answered without the model
    assert trace_notes(hit.trace)["knowledge"] == "hit"
    other = ask("How do I reset my password?", owner="key-b")
    await layer.complete(other)
    assert len(backend_of(layer).requests) == calls + 1
    # a bad rating of the reused answer removes it
    await layer.on_signal(rate(hit, 1, "wrong"))
    await layer.complete(ask("How do I reset my password?", user="u10"))
    assert len(backend_of(layer).requests) == calls + 2


async def test_a_corrected_answer_is_what_gets_reused(layer: LearningLayer) -> None:
    first = ask("What port does HTTPS use?")
    await layer.complete(first)
    await layer.on_signal(rate(first, 1, "wrong", corrected_answer="443"))
    reply = await layer.complete(ask("What port does HTTPS use?", user="u2"))
    assert reply.text == "443"


async def test_knowledge_as_context_gives_the_good_answer_as_an_exemplar(settings: LearnSettings) -> None:
    layer = LearningLayer(
        FakeBackend(answer), "fast", dataclasses.replace(settings, knowledge="context"), words
    )
    await layer.start()
    try:
        first = ask("How do I reset my password?")
        await layer.complete(first)
        await layer.on_signal(rate(first, 5))
        second = ask("How do I reset my password?", user="u2")
        await layer.complete(second)
        sent = backend_of(layer).requests[-1]
        assert sent.messages[0]["role"] == "system" and "rated highly" in sent.messages[0]["content"]
        assert trace_notes(second.trace)["knowledge"] == "context"
    finally:
        await layer.aclose()


async def test_streams_are_learned_from_and_hits_stream_too(layer: LearningLayer) -> None:
    first = ask("How do I reset my password?")
    first.stream = True
    text = "".join(
        [
            parsed(c)["choices"][0]["delta"].get("content", "")
            async for c in layer.stream(first)
            if parsed(c)["choices"]
        ]
    )
    await layer.on_signal(rate(first, 5))
    second = ask("How do I reset my password?", user="u2")
    chunks = [parsed(c) async for c in layer.stream(second)]
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == text
    assert chunks[-1]["choices"] == [] and "usage" in chunks[-1]


async def test_opted_out_and_tool_requests_are_left_alone(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    await layer.on_signal(rate(first, 2, "too complex"))
    opted = ask("Explain microservices")
    opted.options["learn"] = False
    await layer.complete(opted)
    assert opted.trace.variant is None
    assert message_text(backend_of(layer).requests[-1].messages[-1]) == "Explain microservices"
    tools = ask("Explain microservices", tools=[{"type": "function", "function": {"name": "f"}}])
    await layer.complete(tools)
    assert message_text(backend_of(layer).requests[-1].messages[-1]) == "Explain microservices"
    assert tools.trace.variant is not None and tools.trace.variant.variant == "baseline"


async def test_ratings_of_other_owners_or_unknown_responses_are_ignored(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    assert await layer.on_signal(Signal(first.trace.request_id, 1, owner="key-b", comment="too long")) is None
    assert await layer.on_signal(Signal("chatcmpl-unknown", 1, owner="key-a")) is None
    assert layer.counts["signals"] == 0


async def test_signals_are_logged_with_their_variant_and_user(layer: LearningLayer) -> None:
    first = ask("Explain microservices")
    await layer.complete(first)
    await layer.complete(ask("Explain microservices"))  # a regenerate: an implicit signal
    await layer.on_signal(rate(first, 2, "too long", user="end-user-7"))
    await asyncio.gather(*layer._tasks)  # the log is written off the event loop
    implicit, explicit = layer.knowledge.signals(first.trace.request_id)
    assert (implicit["kind"], implicit["end_user"], implicit["rating"]) == ("regenerate", "u1", None)
    assert (explicit["kind"], explicit["end_user"], explicit["rating"]) == ("rating", "end-user-7", 2)
    assert (explicit["variant"], explicit["reasons"]) == ("baseline", '["too_long"]')
    assert first.trace.variant is not None and explicit["context"] == first.trace.variant.context


async def test_lukewarm_ratings_and_rephrasing_wear_a_reused_answer_out(layer: LearningLayer) -> None:
    first = ask("How do I reset my password?")
    await layer.complete(first)
    await layer.on_signal(rate(first, 4))
    hit = ask("How do I reset my password?", user="u2")
    await layer.complete(hit)
    assert hit.trace.variant is not None and hit.trace.variant.knowledge == "hit"
    await layer.on_signal(rate(hit, 3))  # half a point against
    again = ask("How do I reset my password?", user="u3")
    await layer.complete(again)
    assert again.trace.variant is not None and again.trace.variant.knowledge == "hit"
    await layer.complete(ask("how do I reset my password", user="u3"))  # u3 rephrases: the other half
    gone = ask("How do I reset my password?", user="u4")
    await layer.complete(gone)
    assert gone.trace.variant is not None and gone.trace.variant.knowledge == ""
