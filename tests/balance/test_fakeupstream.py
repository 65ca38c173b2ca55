"""The fake upstream behaves like an OpenAI server, and misbehaves on demand."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import aiohttp
import orjson
import pytest

from thrifty.fakeupstream import FakeUpstream


def body(text: str = "hi", **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


async def post(session: aiohttp.ClientSession, url: str, data: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(url + "/chat/completions", json=data) as resp:
        return resp.status, await resp.json()


async def read_sse(resp: aiohttp.ClientResponse) -> list[Any]:
    events: list[Any] = []
    async for line in resp.content:
        if line.startswith(b"data: "):
            payload = line[6:].strip()
            events.append("[DONE]" if payload == b"[DONE]" else orjson.loads(payload))
    return events


async def test_plain_completion_has_text_and_usage() -> None:
    async with FakeUpstream(chunks=3, text="a b c") as up, aiohttp.ClientSession() as s:
        status, data = await post(s, up.url, body("one two"))
    assert status == 200
    assert data["choices"][0]["message"]["content"] == "a b c"
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert up.stats.requests == 1 and up.stats.completed == 1


async def test_stream_sends_n_chunks_then_usage_then_done() -> None:
    async with (
        FakeUpstream(chunks=5) as up,
        aiohttp.ClientSession() as s,
        s.post(up.url + "/chat/completions", json=body(stream=True)) as resp,
    ):
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = await read_sse(resp)
    assert events[-1] == "[DONE]"
    usage = events[-2]
    assert usage["choices"] == [] and usage["usage"]["completion_tokens"] == 5
    pieces = [e["choices"][0]["delta"].get("content") for e in events[1:-3]]
    assert "".join(pieces) == "ok ok ok ok ok"


async def test_tools_with_user_last_answers_a_tool_call() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    async with FakeUpstream() as up, aiohttp.ClientSession() as s:
        _, data = await post(s, up.url, body(tools=tools))
        follow = body(tools=tools)
        follow["messages"] += [
            data["choices"][0]["message"],
            {"role": "tool", "tool_call_id": "x", "content": "42 apples"},
        ]
        _, final = await post(s, up.url, follow)
    call = data["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "lookup", "arguments": "{}"}
    assert data["choices"][0]["finish_reason"] == "tool_calls"
    assert "42 apples" in final["choices"][0]["message"]["content"]


async def test_scripted_tool_arguments_stream_in_pieces_and_json_content_answers_a_format() -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    arguments = '{"city": "Paris"}'
    async with (
        FakeUpstream(tool_arguments=arguments, json_content='{"a": 1}') as up,
        aiohttp.ClientSession() as s,
    ):
        _, data = await post(s, up.url, body(tools=tools))
        _, shaped = await post(s, up.url, body(response_format={"type": "json_object"}))
        async with s.post(up.url + "/chat/completions", json=body(tools=tools, stream=True)) as resp:
            events = await read_sse(resp)
    assert data["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"] == arguments
    assert shaped["choices"][0]["message"]["content"] == '{"a": 1}'
    pieces = [
        call["function"].get("arguments", "")
        for e in events
        if e != "[DONE]" and e["choices"]
        for call in e["choices"][0]["delta"].get("tool_calls") or ()
    ]
    assert pieces[0] == "" and len(pieces) == 3 and "".join(pieces) == arguments


async def test_error_rate_one_answers_configured_status() -> None:
    async with FakeUpstream(error_rate=1.0, error_status=503) as up, aiohttp.ClientSession() as s:
        status, data = await post(s, up.url, body())
    assert status == 503 and data["error"]["type"] == "server_error"
    assert up.stats.errors == 1


async def test_error_rate_is_seeded_and_roughly_right() -> None:
    async with FakeUpstream(error_rate=0.3, seed=7) as up, aiohttp.ClientSession() as s:
        statuses = [(await post(s, up.url, body()))[0] for _ in range(100)]
    failures = statuses.count(500)
    assert 15 <= failures <= 45
    assert up.stats.errors == failures


async def test_429_burst_then_recovers_with_retry_after() -> None:
    async with FakeUpstream(burst_429=2, retry_after=3) as up, aiohttp.ClientSession() as s:
        seen = []
        for _ in range(3):
            async with s.post(up.url + "/chat/completions", json=body()) as resp:
                seen.append((resp.status, resp.headers.get("retry-after")))
    assert seen == [(429, "3"), (429, "3"), (200, None)]


async def test_reset_breaks_the_connection() -> None:
    async with FakeUpstream(reset_rate=1.0) as up, aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientError):
            await post(s, up.url, body())
    assert up.stats.resets == 1


async def test_stream_dropped_after_k_chunks() -> None:
    async with (
        FakeUpstream(chunks=10, drop_after_chunks=3) as up,
        aiohttp.ClientSession() as s,
        s.post(up.url + "/chat/completions", json=body(stream=True)) as resp,
    ):
        assert resp.status == 200
        got = 0
        with pytest.raises(aiohttp.ClientError):
            async for line in resp.content:
                got += line.startswith(b"data: ")
    assert got == 3 and up.stats.drops == 1


async def test_control_endpoint_changes_behaviour_and_reports_stats() -> None:
    async with FakeUpstream() as up, aiohttp.ClientSession() as s:
        await post(s, up.url, body())
        async with s.post(up.root + "/_control", json={"healthy": False, "reset_stats": True}) as r:
            state = await r.json()
        async with s.get(up.root + "/health") as health:
            assert health.status == 503
        async with s.post(up.root + "/_control", json={"latency": "gaussian"}) as bad:
            assert bad.status == 400
    assert state["behaviour"]["healthy"] is False
    assert state["stats"]["requests"] == 0


async def test_in_flight_max_counts_concurrency() -> None:
    async with FakeUpstream(latency_ms=50) as up, aiohttp.ClientSession() as s:
        await asyncio.gather(*(post(s, up.url, body()) for _ in range(4)))
    assert up.stats.in_flight_max == 4 and up.stats.in_flight == 0


async def test_models_and_health_endpoints() -> None:
    async with FakeUpstream(model="tiny") as up, aiohttp.ClientSession() as s:
        async with s.get(up.url + "/models") as resp:
            models = await resp.json()
        async with s.get(up.root + "/health") as health:
            assert health.status == 200
    assert models["data"][0]["id"] == "tiny"


def test_configure_rejects_unknown_and_invalid_fields() -> None:
    up = FakeUpstream()
    with pytest.raises(ValueError, match="unknown"):
        up.configure(latncy_ms=3)
    with pytest.raises(ValueError, match="error_rate"):
        up.configure(error_rate=2)
    lognormal = up.configure(latency="lognormal", latency_ms=10, seed=1)
    assert lognormal.latency == "lognormal"


def test_cli_serves_requests(unused_tcp_port: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(unused_tcp_port), "--chunks", "2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()

        async def one() -> tuple[int, Any]:
            async with aiohttp.ClientSession() as s:
                return await post(s, f"http://127.0.0.1:{unused_tcp_port}/v1", body())

        status, data = asyncio.run(one())
        assert status == 200 and data["choices"][0]["message"]["content"] == "ok ok"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
