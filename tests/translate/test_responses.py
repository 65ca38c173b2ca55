"""The Responses and legacy-completions translations, held to golden JSON (reviewed by hand once)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from thrifty.errors import InvalidRequest
from thrifty.translate import completions, responses

FIXTURES = Path(__file__).parent.parent / "fixtures" / "translate"


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def test_request_items_become_chat_messages_tools_and_format() -> None:
    case = _load("responses_request.json")
    translated = responses.chat_body(case["request"], case["history"])
    assert translated.chat == case["chat"]
    assert translated.conversation == case["conversation"]


def test_chat_completion_becomes_a_response_object() -> None:
    case = _load("responses_answer.json")
    response = responses.response_object(
        case["completion"], case["request"], case["response_id"], case["created_at"]
    )
    assert response == case["response"]
    assert responses.output_message(response) == case["conversation_message"]


def test_chat_chunks_become_the_responses_event_sequence() -> None:
    case = _load("responses_stream.json")
    stream = responses.ResponseStream(case["request"], case["response_id"], case["created_at"])
    events = stream.start()
    for chunk in case["chunks"]:
        events += stream.feed(chunk)
    events += stream.finish()
    assert events == case["events"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert stream.response == events[-1]["response"]


def test_string_input_and_defaults() -> None:
    translated = responses.chat_body({"model": "m", "input": "hi", "instructions": ""})
    assert translated.chat == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_a_length_stop_is_an_incomplete_response() -> None:
    completion = {"choices": [{"message": {"content": "cut"}, "finish_reason": "length"}]}
    response = responses.response_object(completion, {"model": "m", "input": "x"}, "resp_1", 1)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}


def test_an_empty_stream_is_one_empty_message() -> None:
    stream = responses.ResponseStream({"model": "m"}, "resp_1", 1)
    events = stream.start() + stream.finish()
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert stream.response["output"][0]["content"][0]["text"] == ""


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file"}]}]},
            "input[0].content[0].type",
        ),
        ({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "m", "input": "x", "tool_choice": 5}, "tool_choice"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}, "text.format.schema"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "m", "input": "x", "instructions": ["x"]}, "instructions"),
        ({"model": "m", "input": "x", "background": True}, "background"),
        (  # found by the fuzzer: a text part whose text is not a string was a 500
            {
                "model": "m",
                "input": [{"type": "function_call_output", "call_id": "c", "output": [{"text": {"x": 1}}]}],
            },
            "input[0].output[0].text",
        ),
        (
            {"model": "m", "input": [{"type": "function_call_output", "call_id": "c", "output": ["x"]}]},
            "input[0].output[0]",
        ),
    ],
)
def test_bad_responses_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        responses.chat_body(body)
    assert caught.value.param == param


def test_completions_round_trip() -> None:
    case = _load("completions.json")
    assert completions.chat_bodies(case["request"]) == case["chat"]
    answer = completions.completion_object(
        case["answers"], case["request"], case["completion_id"], case["created"]
    )
    assert answer == case["completion"]
    chunks = [
        completions.completion_chunk(c, "fake", case["completion_id"], case["created"])
        for c in case["chunks"]
    ]
    assert chunks == case["stream"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x"}, "model"),
        ({"model": "m"}, "prompt"),
        ({"model": "m", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "m", "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": "m", "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": "m", "prompt": "x", "logprobs": 2}, "logprobs"),
        ({"model": "m", "prompt": ["a", "b"], "stream": True}, "prompt"),
    ],
)
def test_bad_completions_bodies_name_the_field(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        completions.chat_bodies(body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("chat", "sent"),
    [
        ("max_tokens", "max_output_tokens"),
        ("response_format", "text.format"),
        ("messages[2].content", "input"),
        ("tools[1].function.parameters", "tools[1].parameters"),
        ("temperature", "temperature"),
        (None, None),
    ],
)
def test_chat_fields_in_errors_are_named_as_the_client_sent_them(chat: str | None, sent: str | None) -> None:
    assert responses.responses_param(chat) == sent


def test_usage_carries_cached_and_reasoning_tokens_over() -> None:
    chat = {
        "prompt_tokens": 50,
        "completion_tokens": 30,
        "prompt_tokens_details": {"cached_tokens": 20},
        "completion_tokens_details": {"reasoning_tokens": 12},
    }
    out = responses.usage(chat)
    assert out["input_tokens_details"] == {"cached_tokens": 20}
    assert out["output_tokens_details"] == {"reasoning_tokens": 12}
    assert out["total_tokens"] == 80
