"""The embedded model reuses the KV cache of a shared prompt prefix and reports it as cached tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from thrifty.config import Deployment
from thrifty.providers.local import LocalBackend, reused
from thrifty.types import ChatRequest


def test_the_reused_prefix_is_the_common_start_less_the_last_prompt_token() -> None:
    assert reused([1, 2, 3, 4], [1, 2, 9, 9, 9], 5) == 2
    assert reused([1, 2, 3], [1, 2, 3, 7], 4) == 3
    assert reused([1, 2, 3], [1, 2, 3], 3) == 2  # the same prompt: its last token is evaluated again
    assert reused([], [1, 2], 2) == 0
    assert reused([5, 6], [1, 2], 2) == 0


SYSTEM = "You are a patient tutor. " + "Answer from the notes below.\n" + "Note: the sky is blue. " * 60


def turn(question: str) -> ChatRequest:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": question},
    ]
    return ChatRequest(model="smollm2", messages=messages, params={"max_tokens": 4, "temperature": 0})


@pytest.fixture
async def smollm2() -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(Deployment(name="local/smollm2", provider="local", model="smollm2"))
    await backend.start()
    yield backend
    await backend.aclose()


@pytest.mark.model
async def test_a_shared_prefix_is_reported_as_cached(smollm2: LocalBackend) -> None:
    first = await smollm2.complete(turn("What colour is the sky?"))
    assert first.usage.cached_tokens == 0
    second = await smollm2.complete(turn("And what colour is grass?"))
    assert first.usage.prompt_tokens - 20 < second.usage.cached_tokens < second.usage.prompt_tokens
    assert second.body["usage"]["prompt_tokens_details"]["cached_tokens"] == second.usage.cached_tokens
    chunks = [c async for c in smollm2.stream(turn("And the sea?"))]
    assert first.usage.prompt_tokens - 20 < chunks[-1]["usage"]["prompt_tokens_details"]["cached_tokens"]
