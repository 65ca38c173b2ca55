"""The default transport against a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from thrifty.errors import RateLimited, UpstreamConnectionError
from thrifty.providers.openai import OpenAIBackend
from thrifty.testing import chat
from thrifty.transport.aio import AiohttpTransport
from thrifty.types import parsed

from .helpers import deployment, sse

PEERS: list[object] = []


async def _chat(request: web.Request) -> web.StreamResponse:
    PEERS.append(request.transport.get_extra_info("peername") if request.transport else None)
    body = await request.json()
    if body["messages"][0]["content"] == "limit":
        return web.json_response(
            {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "2"}
        )
    if not body.get("stream"):
        return web.json_response(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
        )
    response = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await response.prepare(request)
    for word in ("po", "ng"):
        chunk = {"id": "c1", "model": body["model"], "choices": [{"index": 0, "delta": {"content": word}}]}
        await response.write(sse([chunk]))
    end = {
        "id": "c1",
        "model": body["model"],
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
    }
    await response.write(sse([end, "[DONE]"]))
    return response


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", _chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_complete_and_stream_through_a_real_server(upstream: str) -> None:
    transport = AiohttpTransport(limit=10)
    backend = OpenAIBackend(deployment(api_base=upstream, model="m1"), transport)
    await backend.start()
    try:
        response = await backend.complete(chat("ping"))
        assert response.text == "pong" and response.usage.total_tokens == 4
        chunks = [parsed(c) async for c in backend.stream(chat("ping"))]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == "pong"
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
        with pytest.raises(RateLimited) as caught:
            await backend.complete(chat("limit"))
        assert caught.value.retry_after == 2.0
    finally:
        await backend.aclose()


async def test_pooled_connections_are_reused_after_streams(upstream: str) -> None:
    transport = AiohttpTransport()
    backend = OpenAIBackend(deployment(api_base=upstream), transport)
    PEERS.clear()
    try:
        for _ in range(3):
            [parsed(c) async for c in backend.stream(chat("ping"))]
            await backend.complete(chat("ping"))
    finally:
        await backend.aclose()
    assert len(PEERS) == 6 and len(set(PEERS)) == 1


async def test_refused_connection_is_an_upstream_connection_error() -> None:
    transport = AiohttpTransport()
    with socket.socket() as sock:  # a port that was just free: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(deployment(api_base=f"http://127.0.0.1:{port}/v1"), transport)
    try:
        with pytest.raises(UpstreamConnectionError):
            await backend.complete(chat("ping"))
    finally:
        await transport.aclose()
        await asyncio.sleep(0)
