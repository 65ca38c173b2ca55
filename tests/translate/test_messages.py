"""Anthropic Messages <-> chat translation, against golden JSON in tests/fixtures/messages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thrifty.errors import InvalidRequest, NotFound, RateLimited, UpstreamError
from thrifty.providers.anthropic import request_body as anthropic_body
from thrifty.translate.messages import (
    StreamEncoder,
    chat_body,
    chat_request_from,
    count_tokens,
    error_body,
    message_body,
)
from thrifty.types import Usage

FIXTURES = Path(__file__).parent.parent / "fixtures" / "messages"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.mark.parametrize("name", ["request_full.json", "request_simple.json"])
def test_request_matches_golden(name: str) -> None:
    case = fixture(name)
    assert chat_body(case["messages_body"]) == case["chat_body"]


def test_the_chat_request_passes_thrifty_validation_and_streams_usage() -> None:
    req = chat_request_from({**fixture("request_full.json")["messages_body"], "stream": True})
    assert req.stream and req.include_usage
    assert req.params["max_tokens"] == 256 and req.params["stop"] == ["###"]
    assert req.params["parallel_tool_calls"] is False


def test_cache_control_reaches_an_anthropic_upstream() -> None:
    req = chat_request_from(fixture("request_full.json")["messages_body"])
    upstream = anthropic_body(req, "claude-x", stream=False)
    assert upstream["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert upstream["tools"][0]["cache_control"] == {"type": "ephemeral"}
    # the tool result goes back as a tool_result block, in the same user turn as the text after it
    last = upstream["messages"][-1]
    assert last["role"] == "user"
    assert [b["type"] for b in last["content"]] == ["tool_result", "text"]


@pytest.mark.parametrize("name", ["response_text.json", "response_tool_use.json"])
def test_response_matches_golden(name: str) -> None:
    case = fixture(name)
    usage = Usage.from_json(case["chat"]["usage"])
    assert message_body(case["chat"], usage, id=case["message"]["id"], model="claude-ish") == case["message"]


def test_cache_reads_and_writes_are_reported_apart_from_input() -> None:
    usage = fixture("response_text.json")["message"]["usage"]
    assert usage == {
        "input_tokens": 5,
        "output_tokens": 3,
        "cache_creation_input_tokens": 15,
        "cache_read_input_tokens": 100,
    }


def test_stream_events_match_golden_in_order() -> None:
    case = fixture("stream_text_tool.json")
    encoder = StreamEncoder(id="msg_3", model="claude-ish")
    events = encoder.start()
    for chunk in case["chunks"]:
        events += encoder.feed(chunk)
    events += encoder.finish()
    assert [[name, data] for name, data in events] == case["events"]


def test_an_empty_stream_still_closes_the_message() -> None:
    encoder = StreamEncoder(id="m", model="x")
    names = [name for name, _ in encoder.start() + encoder.finish()]
    assert names == ["message_start", "ping", "message_delta", "message_stop"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 5, "messages": []}, "messages"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "file"}}]}],
            },
            "messages[0].content[0].source",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "tool_result"}]}],
            },
            "messages[0].content[0].tool_use_id",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "t"}],
            },
            "tools[0].input_schema",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
            },
            "tools[0].type",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tool_choice": {"type": "sometimes"},
            },
            "tool_choice",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "stop_sequences": "x",
            },
            "stop_sequences",
        ),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "metadata": {"user_id": 3},
            },
            "metadata.user_id",
        ),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temprature": 1},
            "temprature",
        ),
    ],
)
def test_bad_bodies_are_a_400_naming_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_request_from(body)
    assert caught.value.param == param


def test_errors_use_anthropics_shape() -> None:
    assert error_body(InvalidRequest("bad")) == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "bad"},
    }
    assert error_body(NotFound("no"))["error"]["type"] == "not_found_error"
    assert error_body(RateLimited("slow"))["error"]["type"] == "rate_limit_error"
    assert error_body(UpstreamError("down"))["error"]["type"] == "api_error"


def test_count_tokens_grows_with_the_prompt_and_the_tools() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    longer = {"model": "m", "messages": [{"role": "user", "content": "hello " * 100}]}
    tools = {**base, "tools": [{"name": "f", "input_schema": {"type": "object", "properties": {"a": {}}}}]}
    assert 0 < count_tokens(base) < count_tokens(longer)
    assert count_tokens(tools) > count_tokens(base)


def test_cache_writes_survive_the_chat_body_a_cached_answer_is_kept_in() -> None:
    usage = Usage(prompt_tokens=120, completion_tokens=3, cached_tokens=100, cache_write_tokens=15)
    assert Usage.from_json(usage.to_json()) == usage
    assert Usage.from_json(Usage(prompt_tokens=5).to_json()) == Usage(prompt_tokens=5)


def test_an_anthropic_stream_reports_cache_writes() -> None:
    from thrifty.providers.anthropic_stream import StreamDecoder

    decoder = StreamDecoder()
    decoder.feed(
        {
            "type": "message_start",
            "message": {
                "id": "m",
                "model": "c",
                "usage": {
                    "input_tokens": 5,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 15,
                    "output_tokens": 1,
                },
            },
        }
    )
    decoder.feed(
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}
    )
    assert decoder.usage == Usage(
        prompt_tokens=120, completion_tokens=9, cached_tokens=100, cache_write_tokens=15
    )
