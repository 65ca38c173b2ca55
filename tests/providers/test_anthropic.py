from __future__ import annotations

import pytest

from thrifty.errors import InvalidRequest, RateLimited, UpstreamConnectionError, UpstreamStatusError
from thrifty.providers.anthropic import AnthropicBackend, parse_response, request_body
from thrifty.providers.anthropic_stream import StreamDecoder
from thrifty.testing import chat
from thrifty.transport.mock import MockResponse, MockTransport
from thrifty.types import ChatRequest

from .helpers import deployment, fixture, request_from, sse, without_created


def test_request_golden_system_tools_and_tool_results() -> None:
    data = fixture("anthropic_request_tools.json")
    body = request_body(request_from(data["request"]), data["deployment_model"], stream=False)
    assert body == data["expected_body"]


def test_request_defaults_and_tool_choice_forms() -> None:
    body = request_body(chat("hi", max_tokens=50, stop=["a", "b"]), "claude", stream=True)
    assert body["max_tokens"] == 50 and body["stop_sequences"] == ["a", "b"] and body["stream"] is True
    assert request_body(chat("hi"), "claude", stream=False)["max_tokens"] == 1024
    tools = [{"type": "function", "function": {"name": "f"}}]
    named = request_body(
        chat("hi", tools=tools, tool_choice={"type": "function", "function": {"name": "f"}}),
        "c",
        stream=False,
    )
    assert named["tool_choice"] == {"type": "tool", "name": "f"}
    assert named["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_request_rejects_what_anthropic_cannot_do() -> None:
    with pytest.raises(InvalidRequest) as caught:
        request_body(chat("hi", n=2), "claude", stream=False)
    assert caught.value.param == "n"


def test_images_become_base64_or_url_sources() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
    ]
    request = ChatRequest(model="c", messages=[{"role": "user", "content": parts}])
    blocks = request_body(request, "c", stream=False)["messages"][0]["content"]
    assert blocks[0]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert blocks[1]["source"] == {"type": "url", "url": "https://example.test/cat.png"}


@pytest.mark.parametrize("name", ["anthropic_response_text.json", "anthropic_response_tool_use.json"])
def test_response_golden(name: str) -> None:
    data = fixture(name)
    response = parse_response(data["upstream"])
    assert without_created(response.body) == data["expected"]
    assert response.usage.total_tokens == data["expected"]["usage"]["total_tokens"]


def test_stream_decoder_golden_tool_use() -> None:
    data = fixture("anthropic_stream_tool_use.json")
    decoder = StreamDecoder()
    chunks = [chunk for event in data["events"] for chunk in decoder.feed(event["data"])]
    deltas = [[c["choices"][0]["delta"], c["choices"][0]["finish_reason"]] for c in chunks]
    assert deltas == data["expected_deltas"]
    assert {c["id"] for c in chunks} == {"msg_014p7gG3wDgGV9EUtLvnow3U"}
    assert decoder.done
    assert decoder.usage_chunk()["usage"] == data["expected_usage"]


def test_stream_error_events_become_errors_by_type() -> None:
    decoder = StreamDecoder()
    with pytest.raises(UpstreamStatusError) as caught:
        decoder.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert caught.value.upstream_status == 529 and caught.value.retryable
    with pytest.raises(RateLimited):
        decoder.feed({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}})


async def test_backend_sends_anthropic_headers_and_translates_the_answer() -> None:
    answer = fixture("anthropic_response_tool_use.json")["upstream"]
    transport = MockTransport(lambda request: MockResponse(json=answer))
    backend = AnthropicBackend(
        deployment("anthropic", api_base="https://api.anthropic.test/v1", model="claude-x"), transport
    )
    request = chat("weather?")
    response = await backend.complete(request)
    sent = transport.requests[0]
    assert sent.url == "https://api.anthropic.test/v1/messages"
    assert sent.headers["x-api-key"] == "sk-test" and sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json()["model"] == "claude-x"
    assert response.tool_calls[0]["function"]["name"] == "get_weather"
    assert request.trace.deployment == "test/anthropic"


async def test_backend_stream_ends_with_usage() -> None:
    events = fixture("anthropic_stream_tool_use.json")["events"]
    transport = MockTransport(lambda request: MockResponse(body=sse(events, named=True)))
    request = chat("weather?")
    chunks = [c async for c in AnthropicBackend(deployment("anthropic"), transport).stream(request)]
    assert transport.requests[0].json()["stream"] is True
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 89
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert request.trace.ttft_s is not None


async def test_backend_stream_cut_before_message_stop_is_an_error() -> None:
    events = fixture("anthropic_stream_tool_use.json")["events"][:5]
    transport = MockTransport(lambda request: MockResponse(body=sse(events, named=True)))
    with pytest.raises(UpstreamConnectionError):
        async for _ in AnthropicBackend(deployment("anthropic"), transport).stream(chat("hi")):
            pass


async def test_backend_maps_anthropic_error_status() -> None:
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": "max_tokens: too large"}}
    transport = MockTransport(lambda request: MockResponse(status=400, json=body))
    with pytest.raises(UpstreamStatusError) as caught:
        await AnthropicBackend(deployment("anthropic"), transport).complete(chat("hi"))
    assert caught.value.status == 400 and "max_tokens: too large" in caught.value.message


def test_prompt_caching_marks_are_kept() -> None:
    marked = {"type": "text", "text": "A long shared context.", "cache_control": {"type": "ephemeral"}}
    request = ChatRequest(
        model="c",
        messages=[
            {"role": "system", "content": [marked]},
            {"role": "user", "content": [{**marked, "text": "Question?"}]},
        ],
    )
    body = request_body(request, "c", stream=False)
    assert body["system"] == [marked]
    assert body["messages"][0]["content"] == [{**marked, "text": "Question?"}]


def test_streamed_tool_call_without_input_gets_an_empty_object() -> None:
    decoder = StreamDecoder()
    events = [
        {"type": "message_start", "message": {"id": "msg_1", "model": "c", "usage": {"input_tokens": 3}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t1", "name": "now", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {"type": "content_block_stop", "index": 0},
    ]
    chunks = [chunk for event in events for chunk in decoder.feed(event)]
    arguments = "".join(
        call["function"].get("arguments", "")
        for c in chunks
        for call in c["choices"][0]["delta"].get("tool_calls", [])
    )
    assert arguments == "{}"
