from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from thrifty.errors import (
    RateLimited,
    ThriftyError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from thrifty.providers.openai import OpenAIBackend, parse_chunk, parse_response, request_body
from thrifty.testing import chat
from thrifty.transport import HttpRequest
from thrifty.transport.mock import MockResponse, MockTransport
from thrifty.types import parsed

from .helpers import deployment, fixture, request_from, sse


def completion(
    content: str = "pong", usage: bool = True, model: str = "gpt-4o-mini-2024-07-18"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}
    return body


def test_request_body_matches_golden_and_keeps_the_deployment_model() -> None:
    data = fixture("openai_request.json")
    request = request_from(data["request"])
    body = request_body(request, data["deployment_model"], stream=False)
    assert body == data["expected_body"]
    streamed = request_body(request, data["deployment_model"], stream=True)
    assert streamed == {**data["expected_body"], **data["expected_stream_additions"]}


def test_parse_response_keeps_tool_calls_and_cached_usage() -> None:
    response, estimated = parse_response(fixture("openai_response_tools.json"), [])
    assert not estimated
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls[0]["function"]["arguments"] == '{"city":"Paris"}'
    assert (response.usage.prompt_tokens, response.usage.completion_tokens, response.usage.cached_tokens) == (
        82,
        17,
        64,
    )


def test_parse_chunk_strips_usage_and_drops_usage_only_chunks() -> None:
    chunk, usage = parse_chunk({"choices": [{"index": 0, "delta": {"content": "a"}}], "usage": None})
    assert chunk == {"choices": [{"index": 0, "delta": {"content": "a"}}]} and usage is None
    chunk, usage = parse_chunk({"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 3}})
    assert chunk is None and usage is not None and usage.total_tokens == 5
    with pytest.raises(UpstreamError):
        parse_chunk({"error": {"message": "overloaded"}})


async def test_complete_sends_auth_model_and_reports_upstream_model() -> None:
    transport = MockTransport(lambda request: MockResponse(json=completion(model="gpt-4o-mini-2024-07-18")))
    backend = OpenAIBackend(
        deployment(model="gpt-4o-mini", options={"headers": {"x-org": "acme"}}), transport
    )
    request = chat("ping", model="fast", temperature=0)
    response = await backend.complete(request)
    sent = transport.requests[0]
    assert sent.url == "http://upstream.test/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test" and sent.headers["x-org"] == "acme"
    assert sent.json()["model"] == "gpt-4o-mini" and sent.json()["temperature"] == 0
    assert response.body["model"] == "gpt-4o-mini-2024-07-18"
    assert response.text == "pong" and response.usage.total_tokens == 6
    assert request.trace.deployment == "test/openai"
    assert "usage" not in request.trace.annotations


async def test_no_key_means_no_authorization_header() -> None:
    transport = MockTransport(lambda request: MockResponse(json=completion()))
    await OpenAIBackend(deployment(api_key=None), transport).complete(chat("ping"))
    assert "authorization" not in transport.requests[0].headers


async def test_missing_usage_is_estimated_and_marked() -> None:
    transport = MockTransport(lambda request: MockResponse(json=completion("x" * 40, usage=False)))
    request = chat("y" * 80)
    response = await OpenAIBackend(deployment(), transport).complete(request)
    assert response.usage.completion_tokens == 10
    assert response.usage.prompt_tokens >= 20
    assert response.body["usage"]["total_tokens"] == response.usage.total_tokens
    assert request.trace.annotations["usage"] == "estimated"


def _stream_answer(events: list[Any]) -> MockTransport:
    return MockTransport(
        lambda request: MockResponse(body=sse(events), headers={"content-type": "text/event-stream"})
    )


async def test_stream_golden_text_ends_with_upstream_usage() -> None:
    data = fixture("openai_stream_text.json")
    transport = _stream_answer(data["events"])
    request = chat("hi")
    chunks = [parsed(c) async for c in OpenAIBackend(deployment(), transport).stream(request)]
    assert transport.requests[0].json()["stream_options"] == {"include_usage": True}
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == data["expected_text"]
    assert all("usage" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == data["expected_usage"]
    assert request.trace.ttft_s is not None and request.trace.deployment == "test/openai"


async def test_stream_tool_call_arguments_arrive_in_pieces() -> None:
    data = fixture("openai_stream_tools.json")
    request = chat("weather?")
    chunks = [
        parsed(c) async for c in OpenAIBackend(deployment(), _stream_answer(data["events"])).stream(request)
    ]
    arguments = "".join(
        call["function"].get("arguments", "")
        for c in chunks
        if c["choices"]
        for call in c["choices"][0]["delta"].get("tool_calls") or []
    )
    assert arguments == data["expected_arguments"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] > 0
    assert request.trace.annotations["usage"] == "estimated"


async def test_stream_broken_midway_raises_after_the_chunks_already_sent() -> None:
    first = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "par"}}]}
    transport = MockTransport(
        lambda request: MockResponse(chunks=[sse([first]), aiohttp.ServerDisconnectedError()])
    )
    seen = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in OpenAIBackend(deployment(), transport).stream(chat("hi")):
            seen.append(parsed(chunk))
    assert [c["choices"][0]["delta"]["content"] for c in seen] == ["par"]


async def test_stream_that_ends_without_finishing_is_an_error() -> None:
    first = {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "par"}}]}
    with pytest.raises(UpstreamConnectionError):
        async for _ in OpenAIBackend(deployment(), _stream_answer([first])).stream(chat("hi")):
            pass


def _status(status: int, headers: dict[str, str] | None = None) -> MockTransport:
    body = {"error": {"message": f"failure {status}", "type": "x", "code": None}}
    return MockTransport(lambda request: MockResponse(status=status, json=body, headers=headers or {}))


def _raises(exc: Exception) -> MockTransport:
    def handler(request: HttpRequest) -> MockResponse:
        raise exc

    return MockTransport(handler)


@pytest.mark.parametrize(
    ("transport", "error", "status", "retryable"),
    [
        (_status(400), UpstreamStatusError, 400, False),
        (_status(401), UpstreamStatusError, 502, True),  # thrifty's upstream key, not the client's
        (_status(404), UpstreamStatusError, 404, False),
        (_status(429, {"Retry-After": "12"}), RateLimited, 429, True),
        (_status(500), UpstreamStatusError, 502, True),
        (_raises(TimeoutError()), UpstreamTimeout, 504, True),
        (_raises(aiohttp.ServerDisconnectedError()), UpstreamConnectionError, 502, True),
        (_raises(ConnectionResetError()), UpstreamConnectionError, 502, True),
        (
            _raises(aiohttp.ClientConnectorError(None, OSError(111, "refused"))),  # type: ignore[arg-type]
            UpstreamConnectionError,
            502,
            True,
        ),
    ],
)
@pytest.mark.parametrize("streaming", [False, True])
async def test_failures_map_to_thrifty_errors(
    transport: MockTransport, error: type[ThriftyError], status: int, retryable: bool, streaming: bool
) -> None:
    backend = OpenAIBackend(deployment(), transport)
    with pytest.raises(error) as caught:
        if streaming:
            async for _ in backend.stream(chat("hi")):
                pass
        else:
            await backend.complete(chat("hi"))
    assert caught.value.status == status and caught.value.retryable == retryable
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after == 12.0
    if isinstance(caught.value, UpstreamStatusError):
        assert "failure" in caught.value.message


async def test_embed_returns_vectors_in_input_order() -> None:
    answer = {
        "data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}],
        "usage": {"prompt_tokens": 4, "total_tokens": 4},
    }
    transport = MockTransport(lambda request: MockResponse(json=answer))
    vectors, tokens = await OpenAIBackend(deployment(model="text-embedding-3-small"), transport).embed(
        ["a", "b"]
    )
    assert vectors == [[1.0, 0.0], [0.0, 1.0]] and tokens == 4
    sent = transport.requests[0]
    assert sent.url.endswith("/embeddings") and sent.json() == {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
    }


async def test_servers_refusing_stream_options_can_be_configured_off() -> None:
    data = fixture("openai_stream_text.json")
    transport = _stream_answer(data["events"][:4] + ["[DONE]"])
    request = chat("hi")
    backend = OpenAIBackend(deployment(options={"stream_usage": False}), transport)
    chunks = [parsed(c) async for c in backend.stream(request)]
    assert "stream_options" not in transport.requests[0].json()
    assert chunks[-1]["usage"]["completion_tokens"] == 3  # "Hello there!" at ~4 characters a token
    assert request.trace.annotations["usage"] == "estimated"


async def test_n_choices_go_upstream_and_come_back() -> None:
    choice = {"message": {"role": "assistant", "content": "a"}, "finish_reason": "stop"}
    answer = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, **choice},
            {"index": 1, **choice, "message": {"role": "assistant", "content": "b"}},
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    transport = MockTransport(lambda request: MockResponse(json=answer))
    response = await OpenAIBackend(deployment(), transport).complete(chat("hi", n=2))
    assert transport.requests[0].json()["n"] == 2
    assert [c["message"]["content"] for c in response.body["choices"]] == ["a", "b"]
