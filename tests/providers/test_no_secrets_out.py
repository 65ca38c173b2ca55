"""No secrets out: an upstream that echoes thrifty's key back in its errors never gets that key
to a client, a log line, ``/admin/status`` or the ledger."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.providers.http import error_summary, redact, status_error
from thrifty.server.app import create_app

# One key shaped like a real one, one that no pattern could recognise.
KEYS = {"loud": "sk-proj-Zq81nB4xT0pL9wE2rY7uI3oA5sD6fG8h", "quiet": "hunter2-upstream"}
MSG = [{"role": "user", "content": "hello"}]


@asynccontextmanager
async def echoing_upstream() -> AsyncIterator[str]:
    """A loopback OpenAI-ish server that repeats the credentials it was sent in every error."""

    async def chat(request: web.Request) -> web.StreamResponse:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        body = await request.json()
        mode = body["model"]
        if mode == "refuse":
            error = {
                "message": f"Incorrect API key provided: {key}. Find yours at platform.example",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
            return web.json_response({"error": error}, status=401)
        if mode == "crash":
            return web.Response(status=500, text=f"Traceback ... headers={{'Authorization': 'Bearer {key}'}}")
        if mode == "bad-request":
            error = {"message": f"unknown field; your key {key} is fine", "type": key, "code": key}
            return web.json_response({"error": error}, status=400)
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        chunk = {
            "id": "c",
            "object": "chat.completion.chunk",
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}],
        }
        await response.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await response.write(b"data: " + orjson.dumps({"error": {"message": f"key {key} revoked"}}) + b"\n\n")
        return response

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def models(url: str) -> list[dict[str, Any]]:
    return [
        {
            "name": f"{mode}-{kind}",
            "deployments": [
                {
                    "model": f"openai_compatible/{mode}",
                    "api_base": url,
                    "api_key": key,
                    "name": f"{mode}-{kind}-dep",
                }
            ],
        }
        for mode in ("refuse", "crash", "bad-request", "stream-error")
        for kind, key in KEYS.items()
    ]


async def test_upstream_keys_never_appear_in_responses_logs_status_or_ledger(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    async with echoing_upstream() as url:
        config = parse_config({"server": {"data_dir": str(tmp_path)}, "models": models(url)}, source="t.yaml")
        gateway = Gateway(config)
        async with gateway:
            transport = httpx.ASGITransport(app=create_app(gateway))
            async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
                for group in config.models:
                    for stream in (False, True):
                        r = await client.post(
                            "/v1/chat/completions",
                            json={"model": group.name, "messages": MSG, "stream": stream},
                        )
                        seen.append(f"{r.status_code} {r.headers} {r.text}")
                        if r.status_code >= 400:
                            assert r.json()["error"]["message"], r.text
                seen.append((await client.get("/admin/status")).text)
                seen.append((await client.get("/metrics")).text)
        assert gateway.observer is not None
        ledger = Path(gateway.observer.ledger_settings.path)
        stored = b"".join(p.read_bytes() for p in ledger.parent.glob(ledger.name + "*"))
    everything = "\n".join(seen) + "\n" + caplog.text
    for key in KEYS.values():
        assert key not in everything
        assert key.encode() not in stored
    assert "upstream returned 401" in everything and "[redacted]" in everything  # the summaries did arrive
    assert stored  # the ledger was written


def test_error_summaries_keep_status_type_and_a_short_redacted_message() -> None:
    key = KEYS["quiet"]
    body = orjson.dumps(
        {"error": {"message": f"bad key {key} " + "x" * 1000, "type": "auth_error", "code": "k1"}}
    )
    message, code = error_summary(body, [key])
    assert message.startswith("auth_error: bad key [redacted]") and len(message) <= 220 and code == "k1"
    error = status_error(503, {}, b"oops\n\tBearer abc.def-ghi and sk-ant-api03-AbCdEfGhIjKlMnOp", [])
    assert error.message == "upstream returned 503: oops Bearer [redacted] and [redacted]"
    assert "AKIA" not in redact("token=AKIA1234567890ABCDEF1234567890abcdef99")
    assert redact("the model llama-3.1-8b-instruct answered") == "the model llama-3.1-8b-instruct answered"
