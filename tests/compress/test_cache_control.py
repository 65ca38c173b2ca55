"""Anthropic upstreams get ``cache_control`` breakpoints on the stable prefix of a compressed request."""

from __future__ import annotations

from typing import Any

from thrifty.compress.layer import CompressLayer
from thrifty.compress.settings import CompressSettings, Knobs
from thrifty.providers.anthropic import BREAKPOINT, request_body
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest

SYSTEM = "You are a support agent for a bank. " * 200  # about 1,800 tokens: long enough to cache
TOOLS = [
    {"type": "function", "function": {"name": name, "parameters": {"type": "object", "properties": {}}}}
    for name in ("lookup_account", "close_account")
]


async def sent(messages: list[dict[str, Any]], **settings: Any) -> ChatRequest:
    fake = FakeBackend("ok")
    layer = CompressLayer(fake, "m", CompressSettings(knobs=Knobs(mode="minimal", min_tokens=1), **settings))
    await layer.complete(ChatRequest(model="m", messages=messages, params={"tools": TOOLS}))
    return fake.requests[-1]


def conversation(system: str = SYSTEM) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": "My card was declined."},
        {"role": "assistant", "content": "Which card?"},
        {"role": "user", "content": "The one ending in 4242."},
    ]


async def test_the_tools_the_system_prompt_and_the_conversation_so_far_are_marked() -> None:
    body = request_body(await sent(conversation()), "claude-3-5-haiku-latest", stream=False)
    assert [t.get("cache_control") for t in body["tools"]] == [None, BREAKPOINT]  # tools sorted by name
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": BREAKPOINT}]
    assert body["messages"][-1]["content"] == [
        {"type": "text", "text": "The one ending in 4242.", "cache_control": BREAKPOINT}
    ]
    assert [b.get("cache_control") for m in body["messages"][:-1] for b in m["content"]] == [None, None]


async def test_a_short_prompt_is_not_marked() -> None:
    body = request_body(await sent(conversation("Be brief.")), "claude-3-5-haiku-latest", stream=False)
    assert "cache_control" not in str(body)
    assert body["system"] == "Be brief."


async def test_the_clients_own_breakpoints_are_left_as_they_are() -> None:
    messages = conversation()
    messages[0] = {
        "role": "system",
        "content": [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    }
    body = request_body(await sent(messages), "claude-3-5-haiku-latest", stream=False)
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert str(body).count("cache_control") == 1


async def test_turned_off_or_without_compression_nothing_is_marked() -> None:
    body = request_body(
        await sent(conversation(), cache_control=False), "claude-3-5-haiku-latest", stream=False
    )
    assert "cache_control" not in str(body)
    plain = ChatRequest(model="m", messages=conversation(), params={"tools": TOOLS})
    assert "cache_control" not in str(request_body(plain, "claude-3-5-haiku-latest", stream=False))
