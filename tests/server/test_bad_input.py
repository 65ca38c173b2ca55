"""A client's bad request is the client's error: a 400 naming the field, never a 500,
never a failure counted against a deployment, and always a ledger row."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from thrifty.config import parse_config
from thrifty.errors import InvalidRequest
from thrifty.fakeupstream import FakeUpstream
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend

MSG = [{"role": "user", "content": "hello"}]


def nested(depth: int) -> Any:
    value: Any = "deep"
    for _ in range(depth):
        value = [value]
    return value


def deep_json(depth: int) -> bytes:
    """Nested arrays as JSON text (orjson itself will not write more than 255 levels)."""
    return b"[" * depth + b'"deep"' + b"]" * depth


@asynccontextmanager
async def over_upstream(
    tmp_path: Path, up: FakeUpstream, **server: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """The whole stack from config, ledger on, one deployment on a real fake upstream."""
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path), **server},
            "models": [
                {
                    "name": "m",
                    "deployments": [{"model": "openai_compatible/m", "api_base": up.url, "name": "dep"}],
                }
            ],
        },
        source="t.yaml",
    )
    gateway = Gateway(config)
    async with gateway:
        transport = httpx.ASGITransport(app=create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
            yield client, gateway


def ledger(gateway: Gateway) -> list[tuple[int, str | None]]:
    assert gateway.observer is not None
    db = sqlite3.connect(gateway.observer.ledger_settings.path)
    try:
        return [tuple(row) for row in db.execute("SELECT status, error_type FROM requests ORDER BY ts")]
    finally:
        db.close()


def assert_names(r: httpx.Response, status: int, param: str | None) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param


async def test_role_given_as_an_object_is_a_400_naming_the_field() -> None:
    gateway = Gateway(parse_config({}), backends={"m": FakeBackend("ok")}, observe=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        for role in ({"a": 1}, ["user"], 5, None):
            r = await c.post(
                "/v1/chat/completions", json={"model": "m", "messages": [{"role": role, "content": "x"}]}
            )
            assert_names(r, 400, "messages[0].role")


BAD_FIELDS = [
    ({"messages": [{"role": "user", "content": "x", "name": {"n": 1}}]}, "messages[0].name"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": "call"}]}, "messages[0].tool_calls"),
    (
        {
            "messages": [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"function": {"name": "f", "arguments": {}}}],
                }
            ]
        },
        "messages[0].tool_calls[0].function.arguments",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": 7}]}]},
        "messages[0].content[0].image_url",
    ),
    ({"tool_choice": {"function": "f"}}, "tool_choice"),
    ({"tool_choice": "sometimes"}, "tool_choice"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "none"}}]},
        "tools[0].function.parameters",
    ),
    ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    ({"logprobs": 1}, "logprobs"),
    ({"user": ["u"]}, "user"),
    ({"response_format": {"kind": "json"}}, "response_format"),
    ({"thrifty": {"timeout": "soon"}}, "timeout"),
]


@pytest.mark.parametrize(("fields", "param"), BAD_FIELDS)
async def test_wrong_types_in_optional_fields_are_400s_naming_the_field(
    fields: dict[str, Any], param: str
) -> None:
    gateway = Gateway(parse_config({}), backends={"m": FakeBackend("ok")}, observe=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG, **fields})
    assert_names(r, 400, param)


async def test_lone_surrogate_in_a_chat_body_is_a_400() -> None:
    gateway = Gateway(parse_config({}), backends={"m": FakeBackend("ok")}, observe=False)
    bodies = [
        b'{"model":"m","messages":[{"role":"user","content":"\\ud800"}]}',
        b'{"model":"m","messages":[{"role":"user","content":"x"}],"metadata":{"k":"\\udfff"}}',
        b'{"model":"m","messages":[{"role":"user","content":"\xed\xa0\x80"}]}',
    ]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        for raw in bodies:
            assert_names(await c.post("/v1/chat/completions", content=raw), 400, None)


async def test_a_body_the_upstream_cannot_be_sent_never_opens_the_breaker(tmp_path: Path) -> None:
    """Row 2: metadata nested past orjson's 255 levels, let through the door on purpose."""
    async with (
        FakeUpstream(name="dep") as up,
        over_upstream(tmp_path, up, max_json_depth=1000) as (client, gw),
    ):
        for _ in range(8):  # more than the breaker's five consecutive failures
            r = await client.post(
                "/v1/chat/completions", json={"model": "m", "messages": MSG, "metadata": nested(300)}
            )
            assert_names(r, 400, "metadata")
            assert "sent to the model" in r.json()["error"]["message"]
        ok = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        status = (await client.get("/admin/status")).json()
    assert ok.status_code == 200, ok.text
    assert up.stats.requests == 1
    [dep] = [group["deployments"]["dep"] for group in status.values() if "deployments" in group]
    assert dep["state"] == "closed" and dep["failed"] == 0 and dep["consecutive_failures"] == 0
    assert ledger(gw) == [(400, "invalid_request_error")] * 8 + [(200, None)]


async def test_the_door_refuses_nesting_deeper_than_max_json_depth(tmp_path: Path) -> None:
    async with FakeUpstream(name="dep") as up, over_upstream(tmp_path, up) as (client, _):
        r = await client.post(
            "/v1/chat/completions", json={"model": "m", "messages": MSG, "metadata": nested(300)}
        )
    assert_names(r, 400, "metadata")
    assert r.json()["error"]["code"] == "json_too_deep" and up.stats.requests == 0


async def test_lone_surrogate_from_a_library_caller_is_a_400_not_a_deployment_failure(tmp_path: Path) -> None:
    async with FakeUpstream(name="dep") as up, over_upstream(tmp_path, up) as (_, gw):
        for _ in range(8):
            with pytest.raises(InvalidRequest) as info:
                await gw.chat("m", "a lone \ud800 surrogate")
            assert info.value.param is not None and info.value.param.startswith("messages")
        with pytest.raises(InvalidRequest) as deep:
            await gw.chat("m", "hi", metadata=nested(300))
        assert deep.value.param == "metadata"
        assert (await gw.chat("m", "fine")).text
        status = gw.status()
    assert up.stats.requests == 1
    [dep] = [group["deployments"]["dep"] for group in status.values() if "deployments" in group]
    assert dep["state"] == "closed" and dep["failed"] == 0


async def test_a_request_the_provider_cannot_encode_is_a_400_at_the_provider_boundary(tmp_path: Path) -> None:
    """Past every other check (a ChatRequest built by hand): the provider still says 400."""
    from thrifty.types import ChatRequest

    async with FakeUpstream(name="dep") as up, over_upstream(tmp_path, up) as (_, gw):
        for extra in ({"metadata": nested(300)}, {"seed_list": [2**70]}, {"odd": {1, 2}}, {"k": "\udc00"}):
            request = ChatRequest(model="m", messages=list(MSG), extra=dict(extra))
            with pytest.raises(InvalidRequest) as info:
                await gw.complete(request)
            assert (info.value.param or "").startswith(next(iter(extra))), info.value.message
        status = gw.status()
    assert up.stats.requests == 0
    [dep] = [group["deployments"]["dep"] for group in status.values() if "deployments" in group]
    assert dep["state"] == "closed" and dep["failed"] == 0


async def test_an_unexpected_failure_is_a_500_with_a_ledger_row(tmp_path: Path) -> None:
    config = parse_config({"server": {"data_dir": str(tmp_path)}})
    gateway = Gateway(config, backends={"m": FakeBackend(lambda r: RuntimeError("bug"))})
    async with gateway:
        transport = httpx.ASGITransport(app=create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            plain = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
            streamed = await client.post(
                "/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True}
            )
            unknown = await client.post("/v1/chat/completions", json={"model": "nope", "messages": MSG})
    for r in (plain, streamed):
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
    assert unknown.status_code == 404
    assert ledger(gateway) == [(500, "server_error"), (500, "server_error"), (404, "invalid_request_error")]


DOORS = [
    ("/v1/chat/completions", {"messages": MSG}),
    ("/v1/completions", {"prompt": "hello"}),
    ("/v1/responses", {"input": "hello"}),
    ("/v1/messages", {"messages": MSG, "max_tokens": 5}),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("path", "body"), DOORS, ids=[path for path, _ in DOORS])
async def test_an_unexpected_failure_on_every_door_is_its_documented_500_with_a_ledger_row(
    tmp_path: Path, path: str, body: dict[str, Any], stream: bool
) -> None:
    """/v1/messages answers a bug in Anthropic's error shape, as its document says, not OpenAI's."""
    from .fuzzing import check_answer

    config = parse_config({"server": {"data_dir": str(tmp_path)}})
    gateway = Gateway(config, backends={"m": FakeBackend(lambda r: RuntimeError("bug"))})
    async with gateway:
        transport = httpx.ASGITransport(app=create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            doc = (await client.get("/openapi.json")).json()
            r = await client.post(path, json={"model": "m", **body, "stream": stream})
    assert r.status_code == 500
    check_answer(doc, path, "POST", (r.status_code, dict(r.headers), r.content))
    assert "failed unexpectedly" in r.text and "bug" not in r.text
    assert ledger(gateway) == [(500, "server_error")]


async def test_batch_metadata_nested_too_deep_is_a_400(tmp_path: Path) -> None:
    gateway = Gateway(
        parse_config({"server": {"data_dir": str(tmp_path)}}),
        backends={"m": FakeBackend("ok")},
        observe=False,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        head = orjson.dumps(
            {"input_file_id": "file-x", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        )
        r = await c.post("/v1/batches", content=head[:-1] + b',"metadata":{"k":' + deep_json(300) + b"}}")
    assert_names(r, 400, "metadata")
