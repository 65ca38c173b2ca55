"""The whole stack from config, over HTTP, while upstreams misbehave."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from thrifty.config import parse_config
from thrifty.fakeupstream import FakeUpstream
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

MSG = [{"role": "user", "content": "hello"}]


@asynccontextmanager
async def gateway_over(models: list[dict[str, Any]]) -> AsyncIterator[httpx.AsyncClient]:
    config = parse_config(
        {"server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-")}, "models": models}, source="t.yaml"
    )
    async with Gateway(config, observe=False) as gateway:
        transport = httpx.ASGITransport(app=create_app(gateway))
        async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
            yield client


def dep(up: FakeUpstream) -> dict[str, Any]:
    return {"model": "openai_compatible/m", "api_base": up.url, "name": up.name}


async def test_local_group_down_falls_back_to_cloud_with_a_header() -> None:
    async with (
        FakeUpstream(name="local-1", reset_rate=1.0) as l1,
        FakeUpstream(name="local-2", error_rate=1.0, error_status=503) as l2,
        FakeUpstream(name="cloud", text="from the cloud", chunks=3) as cloud,
        gateway_over(
            [
                {"name": "local", "deployments": [dep(l1), dep(l2)], "fallbacks": ["cloud"]},
                {"name": "cloud", "deployments": [dep(cloud)]},
            ]
        ) as client,
    ):
        r = await client.post("/v1/chat/completions", json={"model": "local", "messages": MSG})
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "from the cloud"
    assert r.headers["x-thrifty-fallback"] == "local->cloud"


async def test_stream_cut_mid_way_ends_with_an_sse_error_event() -> None:
    async with (
        FakeUpstream(name="cuts", chunks=10, drop_after_chunks=4) as cuts,
        gateway_over([{"name": "m", "deployments": [dep(cuts)]}]) as client,
    ):
        r = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
    assert r.status_code == 200
    events = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
    payloads = [json.loads(e) for e in events if e != "[DONE]"]
    assert any(p.get("choices") for p in payloads)
    assert "error" in payloads[-1] and cuts.stats.requests == 1


async def test_group_full_answers_429_with_retry_after() -> None:
    async with (
        FakeUpstream(name="slow", latency_ms=300) as slow,
        gateway_over(
            [{"name": "m", "deployments": [dep(slow)], "max_concurrency": 1, "max_queue": 0}]
        ) as client,
    ):
        first = asyncio.ensure_future(
            client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        )
        while slow.stats.in_flight == 0:
            await asyncio.sleep(0.005)
        second = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        assert (await first).status_code == 200
    assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
    assert second.json()["error"]["code"] == "overloaded"
