"""The HTTP API through ASGI, over scripted backends: statuses, headers, SSE framing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from thrifty.config import parse_config
from thrifty.errors import RateLimited, UpstreamConnectionError, UpstreamTimeout
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend

MSG = [{"role": "user", "content": "hello there"}]


def make_client(backends: dict[str, FakeBackend], **server: object) -> httpx.AsyncClient:
    import tempfile

    config = parse_config({"server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-"), **server}})
    gateway = Gateway(config, backends=backends, observe=False)
    transport = httpx.ASGITransport(app=create_app(gateway))
    return httpx.AsyncClient(transport=transport, base_url="http://thrifty")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client({"m": FakeBackend("the answer is here", name="dep-a")}) as c:
        yield c


async def test_chat_completion_returns_openai_body_and_thrifty_headers(client: httpx.AsyncClient) -> None:
    started = time.perf_counter()
    r = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    elapsed_ms = (time.perf_counter() - started) * 1000
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "the answer is here"
    assert (
        body["usage"]["total_tokens"]
        == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
        > 0
    )
    assert r.headers["x-thrifty-model"] == "dep-a"
    assert 0 < float(r.headers["x-thrifty-overhead-ms"]) <= elapsed_ms  # a part of this request's time
    assert body["id"] == r.headers["x-thrifty-request-id"]


async def test_stream_is_sse_ending_in_done_with_usage_only_when_asked(client: httpx.AsyncClient) -> None:
    for include_usage in (False, True):
        body = {"model": "m", "messages": MSG, "stream": True}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
        assert text == "the answer is here"
        usage = [c for c in chunks if c.get("usage")]
        assert bool(usage) is include_usage
        if include_usage:
            assert usage[0]["usage"]["completion_tokens"] == 4


BAD = [
    (b"{not json", 400, None),
    (b"[1, 2]", 400, None),
    (b"", 400, None),
    (json.dumps({"messages": MSG}).encode(), 400, "model"),
    (json.dumps({"model": "m"}).encode(), 400, "messages"),
    (json.dumps({"model": "m", "messages": []}).encode(), 400, "messages"),
    (json.dumps({"model": "m", "messages": ["hi"]}).encode(), 400, "messages[0]"),
    (
        json.dumps({"model": "m", "messages": [{"role": "robot", "content": "x"}]}).encode(),
        400,
        "messages[0].role",
    ),
    (
        json.dumps({"model": "m", "messages": [{"role": "user", "content": 5}]}).encode(),
        400,
        "messages[0].content",
    ),
    (json.dumps({"model": "m", "messages": MSG, "temperature": 3}).encode(), 400, "temperature"),
    (json.dumps({"model": "m", "messages": MSG, "temperature": "hot"}).encode(), 400, "temperature"),
    (json.dumps({"model": "m", "messages": MSG, "max_tokens": 0}).encode(), 400, "max_tokens"),
    (json.dumps({"model": "m", "messages": MSG, "n": 3}).encode(), 400, "n"),
    (json.dumps({"model": "m", "messages": MSG, "stream": "yes"}).encode(), 400, "stream"),
    (json.dumps({"model": "m", "messages": MSG, "stop": [1]}).encode(), 400, "stop"),
    (json.dumps({"model": "m", "messages": MSG, "tools": [{"type": "function"}]}).encode(), 400, "tools[0]"),
    (json.dumps({"model": "nope", "messages": MSG}).encode(), 404, "model"),
]


@pytest.mark.parametrize(("raw", "status", "param"), BAD)
async def test_bad_input_gets_openai_error_naming_the_problem(
    client: httpx.AsyncClient, raw: bytes, status: int, param: str | None
) -> None:
    r = await client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert error["message"]
    if param:
        assert param.split("[")[0].split(".")[0] in error["message"]


async def test_body_over_limit_is_413() -> None:
    async with make_client({"m": FakeBackend()}, max_body_bytes=1000) as c:
        r = await c.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}
        )
    assert r.status_code == 413
    assert "1000" in r.json()["error"]["message"]


async def test_api_keys_are_enforced_when_configured() -> None:
    async with make_client({"m": FakeBackend()}, api_keys=["sekrit"]) as c:
        body = {"model": "m", "messages": MSG}
        missing = await c.post("/v1/chat/completions", json=body)
        wrong = await c.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer nope"})
        right = await c.post("/v1/chat/completions", json=body, headers={"authorization": "Bearer sekrit"})
        models = await c.get("/v1/models")
    assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.json()["error"]["type"] == "authentication_error"
    assert models.status_code == 401


@pytest.mark.parametrize(
    ("exc", "status", "retry_after"),
    [
        (RateLimited("slow down", retry_after=7), 429, "7"),
        (UpstreamConnectionError("connection reset by upstream"), 502, None),
        (UpstreamTimeout("upstream did not answer in 30 s"), 504, None),
    ],
)
async def test_upstream_failures_map_to_statuses(
    exc: Exception, status: int, retry_after: str | None
) -> None:
    async with make_client({"m": FakeBackend([exc, exc])}) as c:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        s = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
    for resp in (r, s):
        assert resp.status_code == status
        assert resp.json()["error"]["message"] == str(exc)
        assert resp.headers.get("retry-after") == retry_after


async def test_failure_after_first_chunk_is_a_well_formed_sse_error() -> None:
    class Dropping(FakeBackend):
        async def stream(self, request):  # type: ignore[no-untyped-def,override]
            agen = super().stream(request)
            yield await agen.__anext__()
            yield await agen.__anext__()
            raise UpstreamConnectionError("upstream dropped the stream")

    async with make_client({"m": Dropping("a b c d")}) as c:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert r.status_code == 200
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["message"] == "upstream dropped the stream"


async def test_thrifty_options_reach_the_backend_from_body_and_headers() -> None:
    backend = FakeBackend("ok")
    async with make_client({"m": backend}) as c:
        await c.post(
            "/v1/chat/completions",
            json={
                "model": "m",
                "messages": MSG,
                "thrifty": {"cache": {"no_store": True}},
                "logit_bias": {"1": 2},
            },
            headers={"x-thrifty-route-policy": "rules"},
        )
    seen = backend.requests[0]
    assert seen.options == {"route-policy": "rules", "cache": {"no_store": True}}
    assert seen.extra == {"logit_bias": {"1": 2}}  # unknown fields pass through


async def test_models_health_ready_and_unknown_routes(client: httpx.AsyncClient) -> None:
    models = (await client.get("/v1/models")).json()
    assert [m["id"] for m in models["data"]] == ["m"]
    assert (await client.get("/health")).json() == {"status": "ok"}
    await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    assert (await client.get("/ready")).status_code == 200
    missing = await client.get("/v2/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong_method = await client.get("/v1/chat/completions")
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


async def test_max_completion_tokens_is_accepted_as_max_tokens() -> None:
    backend = FakeBackend("ok")
    async with make_client({"m": backend}) as c:
        r = await c.post(
            "/v1/chat/completions", json={"model": "m", "messages": MSG, "max_completion_tokens": 9}
        )
    assert r.status_code == 200
    assert backend.requests[0].params["max_tokens"] == 9
