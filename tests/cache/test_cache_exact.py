"""The exact cache: what counts as the same request, what is kept, how it is replayed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from thrifty.cache.settings import StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.errors import InvalidRequest, UpstreamTimeout
from thrifty.testing import FakeBackend, chat
from thrifty.types import ChatRequest, Chunk


def ask(text: str = "What is 2+2?", **params: Any) -> ChatRequest:
    params.setdefault("temperature", 0)
    return chat(text, model="fast", **params)


async def collect(stream: Any) -> list[Chunk]:
    return [chunk async for chunk in stream]


def stream_text(chunks: list[Chunk]) -> str:
    return "".join(
        (choice.get("delta") or {}).get("content") or "" for c in chunks for choice in c.get("choices") or ()
    )


async def test_second_identical_request_is_served_from_cache(make_layer: Any) -> None:
    backend = FakeBackend("four")
    layer = make_layer(backend)
    first, second = ask(), ask()
    assert (await layer.complete(first)).text == "four"
    reply = await layer.complete(second)
    assert reply.text == "four"
    assert len(backend.requests) == 1
    assert first.trace.annotations["cache"] == "miss"
    assert second.trace.annotations["cache"] == "hit-exact"
    assert reply.body["id"] == second.trace.request_id
    assert reply.usage.cached_tokens == reply.usage.prompt_tokens > 0
    assert reply.body["usage"]["prompt_tokens_details"]["cached_tokens"] == reply.usage.prompt_tokens


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r.params.update(max_tokens=5),
        lambda r: r.params.update(tools=[{"type": "function", "function": {"name": "f"}}]),
        lambda r: r.messages.insert(0, {"role": "system", "content": "Answer in French."}),
        lambda r: r.messages.insert(0, {"role": "user", "content": "earlier turn"}),
        lambda r: setattr(r.trace, "tenant", "other-tenant"),
        lambda r: r.options.update(cache={"namespace": "other"}),
        lambda r: r.extra.update(reasoning_effort="high"),
    ],
    ids=["param", "tools", "system", "history", "tenant", "namespace", "extra-field"],
)
async def test_anything_that_can_change_the_answer_changes_the_key(make_layer: Any, change: Any) -> None:
    backend = FakeBackend("answer")
    layer = make_layer(backend)
    await layer.complete(ask())
    other = ask()
    change(other)
    await layer.complete(other)
    assert len(backend.requests) == 2
    assert other.trace.annotations["cache"] == "miss"


async def test_end_user_id_does_not_split_the_cache(make_layer: Any) -> None:
    backend = FakeBackend("answer")
    layer = make_layer(backend)
    await layer.complete(ask(user="alice"))
    await layer.complete(ask(user="bob"))
    assert len(backend.requests) == 1


async def test_sampled_answers_are_not_cached_unless_configured(make_layer: Any) -> None:
    backend = FakeBackend("random")
    layer = make_layer(backend)
    for request in (ask(temperature=0.7), ask(temperature=0.7)):
        await layer.complete(request)
        assert request.trace.annotations == {"cache": "miss", "cache-skip": "sampled"}
    assert len(backend.requests) == 2
    sampled = make_layer(FakeBackend("random"), cache_sampled=True)
    await sampled.complete(ask(temperature=0.7))
    again = ask(temperature=0.7)
    await sampled.complete(again)
    assert again.trace.annotations["cache"] == "hit-exact"


async def test_requests_without_temperature_are_cached_unless_the_policy_says_skip(make_layer: Any) -> None:
    backend = FakeBackend("an answer")
    layer = make_layer(backend)
    first, second = chat("no temperature given", model="fast"), chat("no temperature given", model="fast")
    await layer.complete(first)
    await layer.complete(second)
    assert second.trace.annotations["cache"] == "hit-exact"
    skipping = make_layer(FakeBackend("an answer"), unset_temperature="skip")
    for _ in range(2):
        request = chat("no temperature, skip policy", model="fast")
        await skipping.complete(request)
        assert request.trace.annotations == {"cache": "miss", "cache-skip": "sampled"}


async def test_no_cache_skips_reading_but_stores_and_no_store_skips_storing(make_layer: Any) -> None:
    backend = FakeBackend(["old", "fresh", "uncached"])
    layer = make_layer(backend)
    await layer.complete(ask())
    refreshed = ask()
    refreshed.options["cache"] = "no-cache"
    assert (await layer.complete(refreshed)).text == "fresh"
    assert refreshed.trace.annotations["cache-skip"] == "no-cache"
    assert (await layer.complete(ask())).text == "fresh"

    other = ask("another question")
    other.options["cache"] = {"no_store": True}
    await layer.complete(other)
    follow = ask("another question")
    follow_backend_calls = len(backend.requests)
    with pytest.raises(AssertionError, match="exhausted"):  # nothing cached: it goes upstream
        await layer.complete(follow)
    assert len(backend.requests) == follow_backend_calls + 1


async def test_ttl_expires_entries_on_every_level(make_layer: Any, clock: Any) -> None:
    backend = FakeBackend("answer")
    layer = make_layer(backend, ttls=(10.0, 100.0, 100.0))
    await layer.complete(ask())
    await layer.store.tiers.flush()
    clock.advance(50)  # gone from L1, still on disk: served and refilled
    request = ask()
    await layer.complete(request)
    assert request.trace.annotations["cache"] == "hit-exact"
    assert layer.store.tiers.counters.hits["l2"] == 1
    clock.advance(60)
    await layer.complete(ask())
    assert len(backend.requests) == 2


async def test_request_ttl_caps_the_configured_ttl(make_layer: Any, clock: Any) -> None:
    backend = FakeBackend("answer")
    layer = make_layer(backend)
    short = ask()
    short.options["cache"] = "ttl=5"
    await layer.complete(short)
    await layer.store.tiers.flush()
    clock.advance(6)
    await layer.complete(ask())
    assert len(backend.requests) == 2


async def test_errors_are_never_cached(make_layer: Any) -> None:
    backend = FakeBackend([UpstreamTimeout("slow"), "recovered"])
    layer = make_layer(backend)
    with pytest.raises(UpstreamTimeout):
        await layer.complete(ask())
    assert (await layer.complete(ask())).text == "recovered"


async def test_malformed_cache_header_is_a_400_naming_it(make_layer: Any) -> None:
    layer = make_layer(FakeBackend("x"))
    request = ask()
    request.options["cache"] = "no-cache, ttl=soon"
    with pytest.raises(InvalidRequest) as info:
        await layer.complete(request)
    assert info.value.param == "x-thrifty-cache"
    assert "ttl" in info.value.message


async def test_cached_answer_replays_as_a_stream(make_layer: Any) -> None:
    backend = FakeBackend("two plus two is four")
    layer = make_layer(backend)
    await layer.complete(ask())
    request = ask()
    request.stream = True
    chunks = await collect(layer.stream(request))
    assert request.trace.annotations["cache"] == "hit-exact"
    assert stream_text(chunks) == "two plus two is four"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert all(c["id"] == request.trace.request_id for c in chunks)


async def test_a_streamed_answer_is_kept_and_served_to_a_plain_request(make_layer: Any) -> None:
    backend = FakeBackend("streamed words here")
    layer = make_layer(backend)
    first = ask()
    first.stream = True
    assert stream_text(await collect(layer.stream(first))) == "streamed words here"
    reply = await layer.complete(ask())
    assert reply.text == "streamed words here"
    assert len(backend.requests) == 1


async def test_a_stream_the_client_abandoned_is_not_kept(make_layer: Any) -> None:
    backend = FakeBackend(["one two three four", "again"])
    layer = make_layer(backend)
    request = ask()
    request.stream = True
    stream = layer.stream(request)
    await stream.__anext__()
    await stream.__anext__()
    await stream.aclose()
    assert (await layer.complete(ask())).text == "again"


async def test_tool_calls_survive_a_stream_round_trip(make_layer: Any) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}

    async def streamed(request: ChatRequest) -> Any:
        rid = request.trace.request_id
        yield {"id": rid, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}
        yield {
            "id": rid,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q"'},
                            }
                        ]
                    },
                }
            ],
        }
        yield {
            "id": rid,
            "model": "m",
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ': "x"}'}}]}}
            ],
        }
        yield {"id": rid, "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
        yield {"id": rid, "model": "m", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}

    backend = FakeBackend("unused")
    backend.stream = streamed  # type: ignore[method-assign]
    layer = make_layer(backend)
    request = ask()
    request.stream = True
    await collect(layer.stream(request))
    reply = await layer.complete(ask())
    assert reply.tool_calls == [call]
    assert reply.finish_reason == "tool_calls"


async def test_concurrent_identical_requests_make_one_upstream_call(make_layer: Any) -> None:
    backend = FakeBackend("shared", delay=0.05)
    layer = make_layer(backend)
    requests = [ask() for _ in range(8)]
    streaming = ask()
    streaming.stream = True
    replies, chunks = await asyncio.gather(
        asyncio.gather(*(layer.complete(r) for r in requests)), collect(layer.stream(streaming))
    )
    assert [r.text for r in replies] == ["shared"] * 8
    assert stream_text(chunks) == "shared"
    assert len(backend.requests) == 1


async def test_coalesced_requests_share_the_leaders_error(make_layer: Any) -> None:
    backend = FakeBackend([UpstreamTimeout("slow")], delay=0.05)
    layer = make_layer(backend)
    results = await asyncio.gather(*(layer.complete(ask()) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, UpstreamTimeout) for r in results)
    assert len(backend.requests) == 1


async def test_answers_survive_a_restart_through_the_disk_level(
    tmp_path: Any, make_layer: Any, clock: Any
) -> None:

    path = str(tmp_path / "restart.sqlite3")
    first = CacheStore(StoreSettings(l2_path=path), clock=clock)
    await first.start()
    await make_layer(FakeBackend("persisted"), store=first).complete(ask())
    await first.stop()

    second = CacheStore(StoreSettings(l2_path=path), clock=clock)
    await second.start()
    backend = FakeBackend("not called")
    request = ask()
    assert (await make_layer(backend, store=second).complete(request)).text == "persisted"
    assert backend.requests == []
    await second.stop()


async def test_purge_forgets_one_namespace_only(make_layer: Any) -> None:
    backend = FakeBackend("answer")
    layer = make_layer(backend)
    for namespace in ("docs", "docs", "faq"):
        request = ask(f"question for {namespace}")
        request.options["cache"] = {"namespace": namespace}
        await layer.complete(request)
    assert await layer.purge("docs") == 1
    kept = ask("question for faq")
    kept.options["cache"] = "namespace=faq"
    await layer.complete(kept)
    assert kept.trace.annotations["cache"] == "hit-exact"
    gone = ask("question for docs")
    gone.options["cache"] = "namespace=docs"
    await layer.complete(gone)
    assert gone.trace.annotations["cache"] == "miss"


async def test_without_the_embedding_model_semantic_is_skipped_and_exact_still_works(
    make_layer: Any, caplog: Any
) -> None:
    def missing(texts: Any) -> Any:
        raise RuntimeError("the embedding model is not installed")

    store = CacheStore(StoreSettings(), embed=missing)
    await store.start()
    backend = FakeBackend("answer")
    layer = make_layer(backend, store=store, semantic=True)
    for _ in range(3):
        await layer.complete(ask())
        await layer.store.tiers.flush()
    await store.stop()
    assert len(backend.requests) == 1
    assert [r.getMessage() for r in caplog.records].count(
        "cache: semantic cache off, the embedding model cannot be loaded: the embedding model is not installed"
    ) == 1
