"""The cache through the whole stack: config -> compose -> gateway -> HTTP headers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

MSG = [{"role": "user", "content": "What is the boiling point of water?"}]


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "cache": {"ttl": 600},
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {"provider": "fake", "model": "x", "options": {"script": "100 degrees Celsius"}}
                    ],
                }
            ],
        },
        source="thrifty.yaml",
    )
    gateway = Gateway(config, observe=False)
    await gateway.start()
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as c:
        yield c
    await gateway.aclose()


async def test_second_call_is_a_cache_hit_in_the_headers(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0}
    first = await client.post("/v1/chat/completions", json=body)
    second = await client.post("/v1/chat/completions", json=body)
    assert first.headers["x-thrifty-cache"] == "miss"
    assert second.headers["x-thrifty-cache"] == "hit-exact"
    assert second.json()["choices"][0]["message"]["content"] == "100 degrees Celsius"
    assert second.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


async def test_cached_answer_streams_as_sse(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0}
    await client.post("/v1/chat/completions", json=body)
    r = await client.post(
        "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert r.headers["x-thrifty-cache"] == "hit-exact"
    events = [line[6:] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text == "100 degrees Celsius"
    assert chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"] > 0


async def test_header_and_body_controls(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0}
    await client.post("/v1/chat/completions", json=body)
    bypass = await client.post("/v1/chat/completions", json=body, headers={"x-thrifty-cache": "no-cache"})
    assert bypass.headers["x-thrifty-cache"] == "miss"
    other = await client.post("/v1/chat/completions", json={**body, "thrifty": {"cache": {"namespace": "b"}}})
    assert other.headers["x-thrifty-cache"] == "miss"


async def test_malformed_cache_header_is_a_400_naming_it(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/chat/completions",
        json={"model": "m", "messages": MSG},
        headers={"x-thrifty-cache": "ttl=forever"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == "x-thrifty-cache" and "ttl" in error["message"]
