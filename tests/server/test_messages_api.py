"""/v1/messages through ASGI over scripted backends: the stack applies, errors in Anthropic's shape."""

from __future__ import annotations

import json
import tempfile
from typing import Any

import httpx

from thrifty.config import parse_config
from thrifty.errors import UpstreamConnectionError
from thrifty.gateway import Gateway
from thrifty.server import openapi_messages
from thrifty.server.app import create_app
from thrifty.server.messages import MessagesRoutes
from thrifty.testing import FakeBackend

BODY = {"model": "fake", "max_tokens": 32, "messages": [{"role": "user", "content": "hello"}]}


def client(backends: dict[str, FakeBackend], **server: Any) -> httpx.AsyncClient:
    config = parse_config({"server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-"), **server}})
    app = create_app(Gateway(config, backends=backends, observe=False))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://thrifty")


async def test_a_message_answered_by_a_scripted_backend() -> None:
    backend = FakeBackend("four words of answer")
    async with client({"fake": backend}) as c:
        r = await c.post("/v1/messages", json={**BODY, "system": "Be brief.", "stop_sequences": ["##"]})
    assert r.status_code == 200
    assert r.json()["content"] == [{"type": "text", "text": "four words of answer"}]
    assert r.headers["x-thrifty-model"] == "fake"
    sent = backend.requests[0]
    assert sent.messages[0] == {"role": "system", "content": "Be brief."}
    assert sent.params["stop"] == ["##"] and sent.params["max_tokens"] == 32


async def test_keys_arrive_as_x_api_key_or_bearer_and_errors_are_anthropics() -> None:
    async with client({"fake": FakeBackend("ok")}, api_keys=["sk-a"]) as c:
        missing = await c.post("/v1/messages", json=BODY)
        by_header = await c.post(
            "/v1/messages", json=BODY, headers={"x-api-key": "sk-a", "anthropic-version": "2023-06-01"}
        )
        by_bearer = await c.post("/v1/messages", json=BODY, headers={"authorization": "Bearer sk-a"})
        bad = await c.post("/v1/messages", content=b"{", headers={"x-api-key": "sk-a"})
    assert missing.status_code == 401 and missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "authentication_error"
    assert by_header.status_code == by_bearer.status_code == 200
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request_error"


async def test_an_upstream_failure_is_an_anthropic_api_error() -> None:
    async with client({"fake": FakeBackend([UpstreamConnectionError("refused")])}) as c:
        r = await c.post("/v1/messages", json=BODY)
    assert r.status_code == 502
    assert r.json() == {"type": "error", "error": {"type": "api_error", "message": "refused"}}


async def test_a_stream_is_anthropics_event_sequence() -> None:
    async with client({"fake": FakeBackend("one two three")}) as c:
        r = await c.post("/v1/messages", json={**BODY, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in r.text.strip().split("\n\n")]
    names = [lines[0].removeprefix("event: ") for lines in events]
    assert names[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    datas = [json.loads(lines[1].removeprefix("data: ")) for lines in events]
    text = "".join(d["delta"]["text"] for d in datas if d["type"] == "content_block_delta")
    assert text == "one two three"
    assert datas[-2]["delta"]["stop_reason"] == "end_turn" and datas[-2]["usage"]["output_tokens"] > 0


async def test_count_tokens_is_an_estimate_and_knows_the_models() -> None:
    async with client({"fake": FakeBackend("ok")}) as c:
        ok = await c.post("/v1/messages/count_tokens", json={"model": "fake", "messages": BODY["messages"]})
        unknown = await c.post(
            "/v1/messages/count_tokens", json={"model": "nope", "messages": BODY["messages"]}
        )
    assert ok.status_code == 200 and ok.json()["input_tokens"] > 0
    assert ok.headers["x-thrifty-usage"] == "estimated"
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"


def test_every_messages_route_is_in_its_openapi_paths() -> None:
    documented = openapi_messages.paths()
    schemas = openapi_messages.schemas()
    for route in MessagesRoutes.__new__(MessagesRoutes).routes():
        assert route.path in documented  # type: ignore[attr-defined]
    refs = {
        part.split("/")[-1] for part in json.dumps(documented).split('"') if part.startswith("#/components")
    }
    assert refs <= set(schemas)


async def test_an_anthropic_upstream_gets_cache_control_and_reports_cache_usage() -> None:
    from thrifty.config import Deployment
    from thrifty.providers.anthropic import AnthropicBackend
    from thrifty.transport.mock import MockResponse, MockTransport

    answer = {
        "id": "msg_up",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "cached"}],
        "usage": {
            "input_tokens": 7,
            "output_tokens": 2,
            "cache_read_input_tokens": 900,
            "cache_creation_input_tokens": 50,
        },
    }
    transport = MockTransport(lambda request: MockResponse(json=answer))
    upstream = AnthropicBackend(
        Deployment(
            name="claude/anthropic/claude-x",
            provider="anthropic",
            model="claude-x",
            api_base="http://127.0.0.1:9/v1",
            api_key="k",
        ),
        transport,
    )
    config = parse_config({"server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-")}})
    app = create_app(Gateway(config, backends={"claude": upstream}, observe=False))
    body = {
        "model": "claude",
        "max_tokens": 16,
        "system": [{"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Question?", "cache_control": {"type": "ephemeral"}}],
            }
        ],
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://thrifty") as c:
        r = await c.post("/v1/messages", json=body)
    assert r.status_code == 200
    sent = transport.requests[0].json()
    assert sent["system"] == [
        {"type": "text", "text": "A long manual.", "cache_control": {"type": "ephemeral"}}
    ]
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert r.json()["usage"] == {
        "input_tokens": 7,
        "output_tokens": 2,
        "cache_read_input_tokens": 900,
        "cache_creation_input_tokens": 50,
    }
