"""The Responses API, legacy completions and models/{id} through the real clients.

The official `openai` client and the openai-agents SDK against a running
`thrifty serve` process, in front of the fake upstream process on loopback
(scripted to call a tool with fixed arguments and to answer JSON when asked).
"""

# The SDKs type their events and blocks as unions of dozens of models; these tests read the
# member they asserted by its `type`, which mypy cannot narrow through a list.
# mypy: disable-error-code="union-attr, list-item, misc"

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.processes import free_port as _port
from tests.processes import stop as _stop
from tests.processes import wait_ready as _wait

KEY = "sk-doors-admin"
OTHER = "sk-doors-client"
ARGUMENTS = '{"city": "Paris"}'
JSON_ANSWER = '{"city": "Paris", "sunny": true}'


@dataclass
class Running:
    url: str
    data_dir: Path
    upstream: str  # the fake upstream's root: GET /_control says what it saw


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("doors")
    up_port, port = _port(), _port()
    upstream = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "thrifty.fakeupstream",
            "--port",
            str(up_port),
            "--chunks",
            "5",
            "--text",
            "sunny and warm",
            "--tool-arguments",
            ARGUMENTS,
            "--json-content",
            JSON_ANSWER,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    procs = [upstream]
    try:
        _wait(f"http://127.0.0.1:{up_port}/health", upstream)
        cfg = tmp / "thrifty.yaml"
        cfg.write_text(f"""
server: {{api_keys: [{KEY}, {{key: {OTHER}, role: client}}], data_dir: {tmp}}}
model_list:
  - model_name: fake
    litellm_params: {{model: openai/upstream-model, api_base: "http://127.0.0.1:{up_port}/v1", api_key: sk-up}}
  - model_name: native
    litellm_params:
      model: openai/upstream-model
      api_base: "http://127.0.0.1:{up_port}/v1"
      api_key: sk-up
      options: {{responses: native}}
""")
        thrifty = str(Path(sys.executable).parent / "thrifty")
        proc = subprocess.Popen(
            [thrifty, "serve", "--config", str(cfg), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(proc)
        _wait(f"http://127.0.0.1:{port}/ready", proc)
        yield Running(f"http://127.0.0.1:{port}/v1", tmp, f"http://127.0.0.1:{up_port}")
    finally:
        for p in reversed(procs):
            _stop(p)


def _client(run: Running, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=run.url, api_key=key, max_retries=0)


WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_responses_plain(gateway: Running) -> None:
    client = _client(gateway)
    raw = client.responses.with_raw_response.create(
        model="fake", input="How is the weather?", instructions="Be brief.", max_output_tokens=50
    )
    assert raw.headers["x-thrifty-model"] == "fake/openai/upstream-model"
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == "sunny and warm sunny and"
    assert response.usage is not None and response.usage.output_tokens == 5
    assert response.id.startswith("resp_")
    assert raw.headers["x-thrifty-request-id"].removeprefix("chatcmpl-") == response.id.removeprefix("resp_")


def test_responses_streamed_events_in_order(gateway: Running) -> None:
    client = _client(gateway)
    events = list(client.responses.create(model="fake", input="How is the weather?", stream=True))
    kinds = [e.type for e in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas == 5
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    done = events[-1].response
    assert done.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert done.usage is not None and done.usage.output_tokens == 5
    # a streamed response is stored too
    assert client.responses.retrieve(done.id).output_text == done.output_text


def test_responses_function_tool_round_trip(gateway: Running) -> None:
    client = _client(gateway)
    first = client.responses.create(model="fake", input="Weather in Paris?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    calls = [item for item in first.output if item.type == "function_call"]
    assert (
        len(calls) == 1
        and calls[0].name == "get_weather"
        and json.loads(calls[0].arguments) == {"city": "Paris"}
    )
    second = client.responses.create(
        model="fake",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            *[c.model_dump() for c in calls],  # type: ignore[list-item]
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
    )
    assert second.output_text.startswith("tool result: sunny ")


def test_responses_streamed_function_call_arguments(gateway: Running) -> None:
    client = _client(gateway)
    events = list(client.responses.create(model="fake", input="Weather?", tools=[WEATHER_TOOL], stream=True))  # type: ignore[list-item]
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    pieces = [str(e.delta) for e in events if e.type == "response.function_call_arguments.delta"]
    assert len(pieces) == 2 and "".join(pieces) == ARGUMENTS
    call = events[-1].response.output[0]
    assert call.type == "function_call" and call.arguments == ARGUMENTS


def test_responses_previous_response_id_keeps_the_conversation(gateway: Running) -> None:
    client = _client(gateway)
    first = client.responses.create(model="fake", input="Weather in Paris?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="fake",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
    )
    assert second.previous_response_id == first.id
    assert second.output_text.startswith(
        "tool result: rainy "
    )  # the upstream saw the call and its output after the user turn

    other = _client(gateway, OTHER)
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        other.responses.create(model="fake", previous_response_id=first.id, input="and tomorrow?")
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(first.id)
    assert client.responses.retrieve(first.id).id == first.id
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_responses_input_items_list_the_conversation_a_page_at_a_time(gateway: Running) -> None:
    client = _client(gateway)
    first = client.responses.create(
        model="fake",
        input=[
            {"role": "developer", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris?"}]},
        ],
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="fake",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
    )
    # Oldest first, the whole conversation before the answer: first's input and output, then second's input.
    listed = list(client.responses.input_items.list(second.id, order="asc", limit=2))  # pages of 2
    assert [item.type for item in listed] == ["message", "message", "function_call", "function_call_output"]
    assert listed[0].role == "developer" and listed[0].content[0].text == "Answer briefly."  # type: ignore[union-attr,index]
    assert listed[1].content[0].text == "Weather in Paris?"  # type: ignore[union-attr,index]
    assert listed[2].id == call.id and listed[2].arguments == ARGUMENTS  # type: ignore[union-attr]
    assert listed[3].output == "rainy"  # type: ignore[union-attr]
    assert len({item.id for item in listed}) == 4

    page = client.responses.input_items.list(second.id)  # newest first, 20 at most
    assert [item.id for item in page.data] == [item.id for item in reversed(listed)]
    assert page.has_more is False and page.first_id == listed[-1].id and page.last_id == listed[0].id  # type: ignore[attr-defined]
    after = client.responses.input_items.list(second.id, order="asc", after=listed[1].id, limit=1)
    assert [item.id for item in after.data] == [listed[2].id] and after.has_more is True

    with pytest.raises(openai.NotFoundError):
        _client(gateway, OTHER).responses.input_items.list(second.id)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.input_items.list(second.id, limit=0)
    assert caught.value.body["param"] == "limit"  # type: ignore[index]
    plain = client.responses.create(model="fake", input="hi")
    only = client.responses.input_items.list(plain.id)
    assert [(item.type, item.role) for item in only.data] == [("message", "user")]  # type: ignore[union-attr]


def test_responses_store_false_is_not_kept(gateway: Running) -> None:
    client = _client(gateway)
    response = client.responses.create(model="fake", input="hi", store=False)
    assert response.to_dict().get("store") is False  # echoed by thrifty; not a field of the SDK's model
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.retrieve(response.id)
    assert caught.value.body["param"] == "response_id"  # type: ignore[index]


def test_responses_json_schema_format(gateway: Running) -> None:
    client = _client(gateway)
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model="fake",
        input="Weather in Paris as JSON",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "Paris", "sunny": True}
    assert response.text is not None and response.text.format.type == "json_schema"


def test_responses_bad_input_is_openai_error_json(gateway: Running) -> None:
    client = _client(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake", input=[{"type": "web_search_call", "id": "x"}])  # type: ignore[list-item]
    assert caught.value.body["param"] == "input[0].type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake", input="hi", max_output_tokens=0)
    assert caught.value.body["param"] == "max_output_tokens"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, "sk-wrong").responses.create(model="fake", input="hi")


def test_openai_agents_default_agent_with_a_function_tool(gateway: Running) -> None:
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    client = openai.AsyncOpenAI(base_url=gateway.url, api_key=KEY, max_retries=0)
    agent = Agent(
        name="weather",
        instructions="Use the tool.",
        tools=[get_weather],
        model=OpenAIResponsesModel(model="fake", openai_client=client),
    )
    result = Runner.run_sync(agent, "Weather in Paris?")
    assert seen == ["Paris"]
    assert result.final_output.startswith("tool result: sunny in Paris")


def test_legacy_completions_plain_streamed_and_several_prompts(gateway: Running) -> None:
    client = _client(gateway)
    completion = client.completions.create(model="fake", prompt="Say something", max_tokens=20)
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "sunny and warm sunny and"
    assert completion.usage is not None and completion.usage.completion_tokens == 5

    chunks = list(
        client.completions.create(
            model="fake", prompt="Say something", stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "sunny and warm sunny and"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5

    several = client.completions.create(model="fake", prompt=["one", "two"], echo=True)
    assert [c.index for c in several.choices] == [0, 1]
    assert several.choices[1].text.startswith("two")

    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="fake", prompt=[1, 2, 3])
    assert caught.value.body["param"] == "prompt"  # type: ignore[index]


def test_models_retrieve(gateway: Running) -> None:
    client = _client(gateway)
    model = client.models.retrieve("fake")
    assert model.id == "fake" and model.object == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("nope")
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


def test_openai_agents_streamed_run_with_a_function_tool(gateway: Running) -> None:
    import asyncio

    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"cloudy in {city}"

    async def run() -> tuple[str, list[str]]:
        client = openai.AsyncOpenAI(base_url=gateway.url, api_key=KEY, max_retries=0)
        agent = Agent(
            name="weather",
            tools=[get_weather],
            model=OpenAIResponsesModel(model="fake", openai_client=client),
        )
        result = Runner.run_streamed(agent, "Weather in Paris?")
        kinds: list[str] = [event.type async for event in result.stream_events()]
        await client.close()
        return str(result.final_output), kinds

    final, kinds = asyncio.run(run())
    assert final.startswith("tool result: cloudy in Paris")
    assert "raw_response_event" in kinds and "run_item_stream_event" in kinds


NODE_CLIENT = Path(__file__).parents[1] / "clients" / "node"


def test_openai_node_sdk_chat_stream_and_responses(gateway: Running) -> None:
    """The official `openai` npm package (pinned in tests/clients/node, installed by scripts/test)."""
    assert (NODE_CLIENT / "node_modules" / "openai").is_dir(), (
        f"the Node SDK is not installed: run `npm ci` in {NODE_CLIENT} (scripts/test does)"
    )
    done = subprocess.run(
        ["node", "client.mjs", "fake"],
        cwd=NODE_CLIENT,
        env={"PATH": os.environ["PATH"], "THRIFTY_URL": gateway.url, "THRIFTY_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["chat"]["text"] == "sunny and warm sunny and" and seen["chat"]["finish"] == "stop"
    assert seen["chat"]["usage"]["completion_tokens"] == 5
    assert (
        "".join(seen["stream"]["pieces"]) == "sunny and warm sunny and" and len(seen["stream"]["pieces"]) == 5
    )
    assert seen["stream"]["usage"]["completion_tokens"] == 5
    response = seen["response"]
    assert response["status"] == "completed" and response["text"] == "sunny and warm sunny and"
    assert response["id"].startswith("resp_") and response["usage"]["output_tokens"] == 5
    assert seen["retrieved"] == response["text"]
    events = seen["responseEvents"]
    assert events[:2] == ["response.created", "response.in_progress"] and events[-1] == "response.completed"
    assert events.count("response.output_text.delta") == 5
    assert seen["unknownModel"]["status"] == 404


def test_llamaindex_openai_like_default_and_chat_modes(gateway: Running) -> None:
    """LlamaIndex's OpenAILike: its default mode speaks /v1/completions, `is_chat_model` chat."""
    from llama_index.core.llms import ChatMessage
    from llama_index.llms.openai_like import OpenAILike

    def llm(chat: bool) -> OpenAILike:
        return OpenAILike(
            model="fake", api_base=gateway.url, api_key=KEY, max_retries=0, is_chat_model=chat, max_tokens=20
        )

    completion = llm(False)
    assert completion.complete("Say something").text == "sunny and warm sunny and"
    streamed = [piece.delta for piece in completion.stream_complete("Say something")]
    assert "".join(d or "" for d in streamed) == "sunny and warm sunny and"

    chat = llm(True)
    asked = [ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Weather?")]
    assert chat.chat(asked).message.content == "sunny and warm sunny and"
    pieces = [piece.delta for piece in chat.stream_chat(asked)]
    assert (
        "".join(d or "" for d in pieces) == "sunny and warm sunny and" and len([d for d in pieces if d]) == 5
    )


def _upstream_saw(run: Running) -> dict[str, Any]:
    with urllib.request.urlopen(run.upstream + "/_control", timeout=10) as answer:
        stats: dict[str, Any] = json.loads(answer.read())["stats"]
    return stats


def _ledger_row(run: Running, request_id: str) -> tuple[Any, ...]:
    """The ledger row of a request, once the writer has written it (it writes in the background)."""
    for _ in range(300):  # 30 s at most: the writer batches, and this machine is shared
        with contextlib.closing(sqlite3.connect(run.data_dir / "ledger.db")) as db:
            row = db.execute(
                "SELECT model, deployment, status, prompt_tokens, completion_tokens, stream FROM requests "
                "WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row is not None:
            return tuple(row)
        time.sleep(0.1)
    raise AssertionError(f"no ledger row for {request_id}")


def test_responses_pass_straight_through_to_an_upstream_that_speaks_them(gateway: Running) -> None:
    client = _client(gateway)
    before = _upstream_saw(gateway)["responses"]
    raw = client.responses.with_raw_response.create(
        model="native",
        input="Weather in Paris?",
        instructions="Be brief.",
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
    )
    first = raw.parse()
    # The upstream's own answer: its reasoning item, which no chat translation makes, under thrifty's id.
    assert [item.type for item in first.output] == ["reasoning", "function_call"]
    assert first.id == "resp_" + raw.headers["x-thrifty-request-id"].removeprefix("chatcmpl-")
    assert raw.headers["x-thrifty-model"] == "native/openai/upstream-model"
    seen = _upstream_saw(gateway)
    assert seen["responses"] == before + 1
    sent = seen["last_responses_body"]
    assert (
        sent["model"] == "upstream-model" and sent["store"] is False and sent["instructions"] == "Be brief."
    )
    assert sent["tools"] == [WEATHER_TOOL] and sent["input"] == "Weather in Paris?"
    # The ledger has the upstream's usage, like any request.
    assert _ledger_row(gateway, raw.headers["x-thrifty-request-id"]) == (
        "native",
        "native/openai/upstream-model",
        200,
        first.usage.input_tokens,  # type: ignore[union-attr]
        first.usage.output_tokens,  # type: ignore[union-attr]
        0,
    )

    # thrifty keeps the conversation: the upstream gets the earlier items in `input`, not an id it never stored.
    call = next(item for item in first.output if item.type == "function_call")
    second = client.responses.create(
        model="native",
        previous_response_id=first.id,
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rainy"}],
    )
    assert second.output_text.startswith("tool result: rainy") and second.previous_response_id == first.id
    sent = _upstream_saw(gateway)["last_responses_body"]
    assert "previous_response_id" not in sent
    assert [item.get("type", "message") for item in sent["input"]] == [
        "message",
        "reasoning",
        "function_call",
        "function_call_output",
    ]
    assert all("id" not in item for item in sent["input"])
    assert client.responses.retrieve(second.id).output_text == second.output_text
    with pytest.raises(openai.NotFoundError):
        _client(gateway, OTHER).responses.retrieve(second.id)


def test_responses_streamed_from_an_upstream_that_speaks_them(gateway: Running) -> None:
    client = _client(gateway)
    events = list(client.responses.create(model="native", input="How is the weather?", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 5
    done = events[-1].response
    assert done.output_text == "sunny and warm sunny and" and done.usage is not None
    assert done.usage.output_tokens == 5
    assert _upstream_saw(gateway)["last_responses_body"]["stream"] is True
    assert client.responses.retrieve(done.id).output_text == done.output_text
