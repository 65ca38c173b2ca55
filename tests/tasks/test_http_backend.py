"""HttpBackend translates HTTP failures into thrifty's error tree by status and type."""

from __future__ import annotations

import pytest

from thrifty.errors import RateLimited, UpstreamConnectionError, UpstreamStatusError
from thrifty.fakeupstream import FakeUpstream
from thrifty.tasks.http_backend import HttpBackend
from thrifty.testing import chat


async def test_answers_and_errors_from_a_real_server() -> None:
    async with FakeUpstream(text="hello there") as upstream:
        backend = HttpBackend(upstream.url)
        try:
            response = await backend.complete(chat("hi"))
            assert "hello" in response.text and response.usage.completion_tokens > 0
            upstream.configure(burst_429=1, retry_after=3)
            with pytest.raises(RateLimited) as limited:
                await backend.complete(chat("hi"))
            assert limited.value.retry_after == 3
            upstream.configure(error_rate=1.0, error_status=503)
            with pytest.raises(UpstreamStatusError) as failed:
                await backend.complete(chat("hi"))
            assert failed.value.retryable and failed.value.upstream_status == 503
            upstream.configure(error_status=400)
            with pytest.raises(UpstreamStatusError) as refused:
                await backend.complete(chat("hi"))
            assert not refused.value.retryable and refused.value.status == 400
        finally:
            await backend.aclose()


async def test_connection_refused_is_retryable(free_port: int) -> None:
    backend = HttpBackend(f"http://127.0.0.1:{free_port}")
    try:
        with pytest.raises(UpstreamConnectionError) as err:
            await backend.complete(chat("hi"))
        assert err.value.retryable
    finally:
        await backend.aclose()


def test_pickles_as_settings_without_a_session() -> None:
    import pickle

    copy = pickle.loads(pickle.dumps(HttpBackend("http://127.0.0.1:9/v1", api_key="k", timeout=5)))
    assert copy.endpoint == "http://127.0.0.1:9/v1/chat/completions" and copy.api_key == "k"
