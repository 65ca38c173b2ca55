"""`--url` backends: any OpenAI-compatible server, each request's own model name sent on."""

from __future__ import annotations

import functools
import pickle

import pytest

from thrifty.errors import RateLimited, UpstreamConnectionError, UpstreamStatusError
from thrifty.fakeupstream import FakeUpstream
from thrifty.providers.openai import remote_backend
from thrifty.testing import chat


async def test_answers_with_the_requests_model_and_maps_errors() -> None:
    async with FakeUpstream(text="hello there") as upstream:
        backend = remote_backend(upstream.url.removesuffix("/v1"))  # /v1 is added when missing
        try:
            response = await backend.complete(chat("hi", model="some-model"))
            assert "hello" in response.text and response.usage.completion_tokens > 0
            assert response.body["model"] == "some-model"  # passed through, not replaced
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
    backend = remote_backend(f"http://127.0.0.1:{free_port}")
    try:
        with pytest.raises(UpstreamConnectionError) as err:
            await backend.complete(chat("hi"))
        assert err.value.retryable
    finally:
        await backend.aclose()


def test_a_factory_pickles_for_ray_workers() -> None:
    factory = pickle.loads(pickle.dumps(functools.partial(remote_backend, "http://127.0.0.1:9", "k")))
    backend = factory()
    assert backend.deployment.api_base == "http://127.0.0.1:9/v1" and backend.deployment.api_key == "k"
