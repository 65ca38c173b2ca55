"""Streams forwarded as the upstream's bytes (passthrough) against streams parsed chunk by
chunk: the real `openai` client over loopback sees the same answer, the ledger the same usage."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn

from thrifty.config import parse_config
from thrifty.fakeupstream import FakeUpstream
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.types import ChatRequest, RawEvents

MSG: list[Any] = [{"role": "user", "content": "say something"}]


def _config(tmp_path: Path, upstream: FakeUpstream) -> dict[str, Any]:
    deployment = {"model": "openai_compatible/m", "api_base": upstream.url, "api_key": "sk-up"}
    return {
        "server": {"data_dir": str(tmp_path)},
        # "plain" has no layer that reads a stream; "cached" fills a cache, which must.
        "models": [
            {"name": "plain", "deployments": [deployment]},
            {"name": "cached", "deployments": [deployment], "cache": True},
        ],
        "cache": {"enabled": False, "l2_path": str(tmp_path / "cache.db")},
    }


class Live:
    """The app under uvicorn on 127.0.0.1, in this event loop, with the upstream beside it."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        config = uvicorn.Config(create_app(gateway), host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> openai.AsyncOpenAI:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="-", max_retries=0)
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        self.server.should_exit = True
        assert self.task is not None
        await self.task


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    # a pause between chunks: each read from the wire carries one event, as from a model
    async with FakeUpstream(name="up", chunks=6, text="alpha beta gamma", chunk_delay_ms=3) as up:
        yield up


def _ledger(gateway: Gateway) -> list[tuple[Any, ...]]:
    assert gateway.observer is not None
    db = sqlite3.connect(gateway.observer.ledger_settings.path)
    try:
        return list(
            db.execute(
                "SELECT model, status, error_type, prompt_tokens, completion_tokens, annotations FROM requests"
            )
        )
    finally:
        db.close()


async def _read(client: openai.AsyncOpenAI, model: str, ask: str, **extra: Any) -> list[Any]:
    messages: Any = [{"role": "user", "content": ask}]
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True, **extra)
    return [chunk async for chunk in stream]


def _shape(chunks: list[Any]) -> list[Any]:
    """What a client reads from a stream, without the per-answer id and timestamp."""
    return [c.model_dump(exclude={"id", "created"}) for c in chunks]


async def test_passthrough_and_parsed_streams_read_the_same_to_the_openai_client(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gateway = Gateway(parse_config(_config(tmp_path, upstream)))
    async with Live(gateway) as client:
        for usage in (True, False):
            extra: dict[str, Any] = {"stream_options": {"include_usage": True}} if usage else {}
            ask = f"say something (usage: {usage})"  # a new question each time: no cache hit
            raw = await _read(client, "plain", ask, **extra)
            parsed = await _read(client, "cached", ask, **extra)
            assert _shape(raw) == _shape(parsed)
            assert "".join(c.choices[0].delta.content or "" for c in raw if c.choices).strip()
            assert [c.choices[0].finish_reason for c in raw if c.choices][-1] == "stop"
            assert len({c.id for c in raw}) == 1, "one id for every chunk of a passthrough stream"
            assert raw[0].id != upstream.name and raw[0].id.startswith("chatcmpl-")
            assert (raw[-1].usage is not None) is usage
    rows = _ledger(gateway)
    assert len(rows) == 4 and all(status == 200 and error is None for _, status, error, *_ in rows)
    plain = [r for r in rows if r[0] == "plain"]
    cached = [r for r in rows if r[0] == "cached"]
    assert [r[3:5] for r in plain] == [r[3:5] for r in cached]
    assert all(r[4] > 0 for r in plain), "the upstream's usage reached the ledger"
    assert all("estimated" not in (r[5] or "") for r in plain)


async def test_the_id_of_a_passthrough_stream_is_the_request_id(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    gateway = Gateway(parse_config(_config(tmp_path, upstream)))
    async with Live(gateway) as client:
        response = await client.chat.completions.with_raw_response.create(
            model="plain", messages=MSG, stream=True
        )
        request_id = response.headers["x-thrifty-request-id"]
        chunks = [chunk async for chunk in response.parse()]
    assert chunks and {c.id for c in chunks} == {request_id}


async def test_a_passthrough_stream_cut_by_the_upstream_ends_with_an_error_event(tmp_path: Path) -> None:
    async with FakeUpstream(name="cuts", chunks=10, drop_after_chunks=4) as cuts:
        gateway = Gateway(parse_config(_config(tmp_path, cuts)))
        async with Live(gateway) as client:
            seen: list[Any] = []
            with pytest.raises(openai.APIError) as caught:
                async for chunk in await client.chat.completions.create(
                    model="plain", messages=MSG, stream=True
                ):
                    seen.append(chunk)
    assert seen and all(c.choices for c in seen), "the chunks before the cut arrived whole"
    assert "upstream connection failed" in str(caught.value)
    [(_, status, error, _, completion, annotations)] = _ledger(gateway)
    assert (status, error) == (502, "upstream_error")
    assert completion > 0 and json.loads(annotations)["usage"] == "estimated"


async def test_a_layer_that_reads_the_chunks_turns_passthrough_off(
    tmp_path: Path, upstream: FakeUpstream
) -> None:
    async with Gateway(parse_config(_config(tmp_path, upstream))) as gateway:

        async def pieces(model: str) -> list[Any]:
            request = ChatRequest(model=model, messages=MSG, stream=True)
            return [piece async for piece in gateway.stream_pieces(request)]

        plain, cached = await pieces("plain"), await pieces("cached")
        streamed = [
            piece async for piece in gateway.stream(ChatRequest(model="plain", messages=MSG, stream=True))
        ]
    assert any(isinstance(p, RawEvents) for p in plain)
    assert not any(isinstance(p, RawEvents) for p in cached), "a cache fill reads the chunks"
    assert not any(isinstance(p, RawEvents) for p in streamed), "Gateway.stream gives chunks only"
    assert isinstance(plain[-1], dict) and plain[-1]["usage"]["completion_tokens"] > 0
