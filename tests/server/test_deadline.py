"""``server.request_timeout``: one deadline for a whole request, across retries, hedges and
fallbacks; a client may shorten it (``x-thrifty-timeout`` / ``thrifty.timeout``), never lengthen it.

Upstreams here hang for ten minutes, far past anything the tests wait for: a deadline that
did not hold would show as the test timing out, never as a pass.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from thrifty.balance import build_group
from thrifty.balance.fallbacks import FallbackChain
from thrifty.config import parse_config
from thrifty.errors import UpstreamConnectionError
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, Chunk, chunk_body

MSG = [{"role": "user", "content": "hello"}]
HANG = 600.0


class Hangs(FakeBackend):
    """Answers nothing for ten minutes; a stream sends one chunk first, then hangs."""

    def __init__(self, name: str) -> None:
        super().__init__("never", name=name, delay=HANG)
        self.cancelled = 0

    async def complete(self, request: ChatRequest) -> Any:
        try:
            return await super().complete(request)
        except BaseException:
            self.cancelled += 1
            raise

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        self.requests.append(request)
        request.trace.deployment = self.name
        yield chunk_body(id="x", model=self.name, delta={"role": "assistant", "content": "partial answer"})
        try:
            await asyncio.sleep(HANG)
        except BaseException:
            self.cancelled += 1
            raise


def group(name: str, *deployments: str, **options: Any) -> dict[str, Any]:
    return {
        "name": name,
        "deployments": [{"model": f"fake/{d}", "name": d, "timeout": 60} for d in deployments],
        **options,
    }


def timeout_error(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 504, r.text
    error: dict[str, Any] = r.json()["error"]
    assert error["type"] == "timeout_error" and error["code"] == "request_timeout"
    return error


async def test_request_timeout_bounds_one_request_across_its_retries(tmp_path: Path) -> None:
    slow = Hangs("slow")
    gateway = Gateway(
        parse_config({"server": {"data_dir": str(tmp_path), "request_timeout": 0.2}}),
        backends={"m": slow},
        observe=False,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
    error = timeout_error(r)
    assert "0.2 s" in error["message"] and "server.request_timeout" in error["message"]
    assert slow.cancelled == 1


async def test_a_client_may_shorten_the_deadline_but_not_lengthen_it(tmp_path: Path) -> None:
    gateway = Gateway(
        parse_config({"server": {"data_dir": str(tmp_path), "request_timeout": 0.3}}),
        backends={"m": Hangs("slow")},
        observe=False,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        shorter = await c.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": MSG},
            headers={"x-thrifty-timeout": "0.05"},
        )
        in_body = await c.post(
            "/v1/chat/completions", json={"model": "m", "messages": MSG, "thrifty": {"timeout": 0.05}}
        )
        longer = await c.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": MSG},
            headers={"x-thrifty-timeout": "3600"},
        )
        bad = await c.post(
            "/v1/chat/completions",
            json={"model": "m", "messages": MSG},
            headers={"x-thrifty-timeout": "soon"},
        )
    for r in (shorter, in_body):
        error = timeout_error(r)
        assert "0.05 s" in error["message"] and error["param"] == "timeout"
    assert "0.3 s" in timeout_error(longer)["message"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "timeout"


async def test_the_deadline_covers_retries_and_fallbacks_and_blames_no_deployment(tmp_path: Path) -> None:
    """Group a refuses at once (retried on a2, then a fallback to b); b hangs until the one deadline."""
    refused = UpstreamConnectionError("refused")
    a1, a2 = FakeBackend(lambda r: refused, name="a1"), FakeBackend(lambda r: refused, name="a2")
    b1 = Hangs("b1")
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path), "request_timeout": 0.3},
            "models": [group("a", "a1", "a2", fallbacks=["b"]), group("b", "b1")],
        },
        source="t.yaml",
    )
    scripted = {"a1": a1, "a2": a2, "b1": b1}
    groups = {
        g.name: build_group(g, [scripted[d.name] for d in g.deployments], config) for g in config.models
    }
    chain = FallbackChain(groups["a"], [("b", groups["b"])], [])
    gateway = Gateway(config, backends={"a": chain, "b": groups["b"]}, observe=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        for _ in range(6):  # more than a breaker's consecutive-failure limit
            r = await c.post("/v1/chat/completions", json={"model": "a", "messages": MSG})
            assert "0.3 s" in timeout_error(r)["message"]
            assert r.headers.get("x-thrifty-fallback") is None  # an error response carries no trace headers
        status = gateway.status()
    assert len(a1.requests) + len(a2.requests) >= 6 and b1.cancelled == 6
    [b_dep] = [
        report["deployments"]["b1"] for report in status.values() if "b1" in (report.get("deployments") or {})
    ]
    assert b_dep["state"] == "closed" and b_dep["failed"] == 0


async def test_the_deadline_ends_a_hung_stream_with_an_sse_error_event(tmp_path: Path) -> None:
    slow = Hangs("slow")
    gateway = Gateway(
        parse_config({"server": {"data_dir": str(tmp_path), "request_timeout": 0.2}}),
        backends={"m": slow},
        observe=False,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t"
    ) as c:
        r = await c.post("/v1/chat/completions", json={"model": "m", "messages": MSG, "stream": True})
    assert r.status_code == 200
    events = [e[6:] for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    first, error = json.loads(events[0]), json.loads(events[-2])
    assert first["choices"][0]["delta"]["content"] == "partial answer"
    assert error["error"]["type"] == "timeout_error" and "0.2 s" in error["error"]["message"]
    assert slow.cancelled == 1
