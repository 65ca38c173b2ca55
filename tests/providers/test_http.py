from __future__ import annotations

import asyncio
import email.utils
from typing import Any

import aiohttp
import pytest

from thrifty.errors import (
    ContextWindowExceeded,
    RateLimited,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from thrifty.providers.http import HttpClient, error_detail, retry_after, status_error
from thrifty.transport import HttpRequest, Timeouts, translate_error
from thrifty.transport.mock import MockResponse, MockTransport
from thrifty.types import Trace


def test_error_detail_reads_openai_anthropic_and_plain_bodies() -> None:
    openai = b'{"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    anthropic = b'{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}'
    assert error_detail(openai) == ("bad key", "invalid_api_key")
    assert error_detail(anthropic) == ("Overloaded", None)
    assert error_detail(b'{"error": "model not found"}') == ("model not found", None)
    assert error_detail(b"<html>Bad Gateway</html>") == ("<html>Bad Gateway</html>", None)


def test_retry_after_in_seconds_milliseconds_and_http_date() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = email.utils.formatdate(1_000_030, usegmt=True)
    assert retry_after({"Retry-After": date}, now=1_000_000) == pytest.approx(30)
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None


def test_status_errors_carry_status_message_and_retryability() -> None:
    limited = status_error(429, {"retry-after": "3"}, b'{"error": {"message": "slow down"}}')
    assert isinstance(limited, RateLimited) and limited.retry_after == 3.0
    server = status_error(503, {}, b'{"error": {"message": "busy"}}')
    assert isinstance(server, UpstreamStatusError) and server.retryable and "busy" in server.message
    refused = status_error(404, {}, b'{"error": {"message": "no such model", "code": "model_not_found"}}')
    assert isinstance(refused, UpstreamStatusError) and refused.status == 404 and not refused.retryable
    assert refused.code == "model_not_found"
    too_long = status_error(400, {}, b'{"error": {"message": "too long", "code": "context_length_exceeded"}}')
    assert isinstance(too_long, ContextWindowExceeded)


def test_foreign_errors_are_translated_by_type() -> None:
    assert isinstance(translate_error(TimeoutError()), UpstreamTimeout)
    assert isinstance(translate_error(aiohttp.ServerTimeoutError()), UpstreamTimeout)
    assert isinstance(translate_error(aiohttp.ServerDisconnectedError()), UpstreamConnectionError)
    assert isinstance(translate_error(ConnectionResetError()), UpstreamConnectionError)
    assert isinstance(translate_error(aiohttp.ClientPayloadError()), UpstreamConnectionError)
    assert isinstance(translate_error(aiohttp.InvalidURL("x")), UpstreamError)
    bug = KeyError("x")
    assert translate_error(bug) is bug


async def test_total_timeout_raises_upstream_timeout() -> None:
    async def slow(request: HttpRequest) -> MockResponse:
        await asyncio.sleep(10)
        return MockResponse(json={})

    client = HttpClient(MockTransport(slow))
    request = HttpRequest("http://x/", b"{}", timeouts=Timeouts(total=0.01))
    with pytest.raises(UpstreamTimeout):
        await client.post_json(request, Trace())


async def test_first_byte_timeout_applies_to_streams() -> None:
    async def stalled(request: HttpRequest) -> MockResponse:
        await asyncio.sleep(10)
        return MockResponse(body=b"data: x\n\n")

    client = HttpClient(MockTransport(stalled))
    request = HttpRequest("http://x/", b"{}", timeouts=Timeouts(total=60, first_byte=0.01))
    with pytest.raises(UpstreamTimeout):
        async for _ in client.events(request, Trace()):
            pass


async def test_upstream_wait_is_recorded_in_the_trace() -> None:
    async def answer(request: HttpRequest) -> MockResponse:
        await asyncio.sleep(0.01)
        return MockResponse(json={"ok": True})

    trace = Trace()
    data = await HttpClient(MockTransport(answer)).post_json(HttpRequest("http://x/", b"{}"), trace)
    assert data == {"ok": True}
    assert trace.upstream_s > 0


async def test_stream_is_closed_when_the_consumer_stops_early() -> None:
    streams: list[Any] = []

    def answer(request: HttpRequest) -> MockResponse:
        return MockResponse(chunks=[b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"])

    transport = MockTransport(answer)
    original = transport.open_stream

    async def spy(request: HttpRequest):  # type: ignore[no-untyped-def]
        stream = await original(request)
        streams.append(stream)
        return stream

    transport.open_stream = spy  # type: ignore[method-assign]
    events = HttpClient(transport).events(HttpRequest("http://x/", b"{}"), Trace())
    first = await anext(events)
    await events.aclose()
    assert first.data == "1"
    assert streams[0].closed
