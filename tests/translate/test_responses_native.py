"""The Responses passthrough: the body the upstream gets, and its answer as the gateway's layers read it."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.errors import UpstreamError
from thrifty.translate import responses, responses_native


def test_the_upstream_gets_the_earlier_items_without_ids_and_is_asked_not_to_store() -> None:
    earlier = [
        *responses.input_items("Weather?", "resp_1"),
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "c1",
            "name": "f",
            "arguments": "{}",
            "status": "completed",
        },
    ]
    body = {
        "model": "m",
        "input": [{"type": "function_call_output", "call_id": "c1", "output": "rainy"}],
        "previous_response_id": "resp_1",
        "store": True,
        "stream": True,
        "thrifty": {"cache": "no-cache"},
        "reasoning": {"effort": "low"},
    }
    sent = responses_native.upstream_body(body, earlier)
    assert sent == {
        "model": "m",
        "reasoning": {"effort": "low"},  # what only the upstream understands goes as it came
        "store": False,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "rainy"},
        ],
    }
    assert responses_native.upstream_body({"model": "m", "input": "hi"}, []) == {
        "model": "m",
        "input": "hi",
        "store": False,
    }


def test_a_response_object_becomes_a_chat_completion_with_its_usage() -> None:
    response: dict[str, Any] = {
        "id": "resp_up",
        "created_at": 7,
        "model": "m",
        "output": [
            {"type": "reasoning", "id": "rs", "summary": []},
            {
                "type": "message",
                "content": [{"type": "output_text", "text": "he"}, {"type": "output_text", "text": "y"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ],
        "usage": {"input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 2}},
    }
    completion, usage = responses_native.chat_completion(response)
    choice = completion["choices"][0]
    assert choice["message"]["content"] == "hey" and choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": "{}"}
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (3, 4, 2)
    cut = {**response, "output": [], "incomplete_details": {"reason": "max_output_tokens"}, "usage": None}
    completion, usage = responses_native.chat_completion(cut)
    assert completion["choices"][0]["finish_reason"] == "length" and usage.total_tokens == 0
    with pytest.raises(UpstreamError):
        responses_native.chat_completion({"error": "nope"})


def test_stream_events_become_chat_chunks_ending_in_usage() -> None:
    events = responses_native.EventChunks("chatcmpl-1", "m")
    feed = [
        {"type": "response.created", "response": {}},
        {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message"}},
        {"type": "response.output_text.delta", "delta": "hi"},
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "function_call", "call_id": "c", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"},
        {"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 2}}},
    ]
    chunks = [chunk for event in feed for chunk in events.feed(event)]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"content": "hi"}
    assert deltas[1]["tool_calls"][0]["function"] == {"name": "f", "arguments": ""}
    assert deltas[2]["tool_calls"][0] == {"index": 0, "function": {"arguments": "{}"}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] == 2 and events.done
    with pytest.raises(UpstreamError, match="overloaded"):
        events.feed({"type": "error", "message": "overloaded"})
    with pytest.raises(UpstreamError, match="quota"):
        events.feed({"type": "response.failed", "response": {"error": {"message": "quota"}}})
    with pytest.raises(UpstreamError):
        events.feed([1])
