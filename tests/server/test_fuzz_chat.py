"""Fuzz the chat route: mutated bodies through the real ASGI app, over real provider translations.

Every field of a valid chat body is, in turn, replaced with a wrong type, a deep
nest, a lone surrogate, a huge or non-finite number; the body goes to a scripted
backend, the OpenAI provider and the Anthropic provider (over MockTransport).
No answer may be a 5xx, and every 4xx must be OpenAI's error JSON with a message.
Bounded: a fixed number of examples, no deadline per example, derandomized so a
failure is reproducible.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from thrifty.backend import Backend
from thrifty.config import Deployment, parse_config
from thrifty.gateway import Gateway
from thrifty.providers.anthropic import AnthropicBackend
from thrifty.providers.openai import OpenAIBackend
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend
from thrifty.transport import HttpRequest
from thrifty.transport.mock import MockResponse, MockTransport

FIXTURES = Path(__file__).parent.parent / "fixtures" / "providers"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def sse(events: list[Any], *, named: bool = False) -> bytes:
    if named:
        return "".join(f"event: {e['event']}\ndata: {json.dumps(e['data'])}\n\n" for e in events).encode()
    return "".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events).encode()


def deployment(provider: str) -> Deployment:
    return Deployment(
        name=f"fuzz/{provider}",
        provider=provider,
        model="upstream-model",
        api_base="http://upstream.test/v1",
        api_key="sk-test",
    )


MODELS = ("fake", "oa", "an")

# Values no well-behaved client sends.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**63, 10**30, 1e308, -1e308]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["\ud800", "a\udfffb", "", "user", "function", "text", "image_url", "auto", "none"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def deep(depth: int) -> Any:
    value: Any = "x"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


odd = st.one_of(values, st.integers(min_value=50, max_value=400).map(deep))

# Paths into a valid body where a wrong value goes.
PATHS: list[tuple[Any, ...]] = [
    ("model",),
    ("messages",),
    ("messages", 0),
    ("messages", 0, "role"),
    ("messages", 0, "content"),
    ("messages", 0, "name"),
    ("messages", 1, "content"),
    ("messages", 1, "tool_calls"),
    ("messages", 1, "tool_calls", 0, "function"),
    ("messages", 1, "tool_calls", 0, "function", "arguments"),
    ("messages", 2, "tool_call_id"),
    ("messages", 2, "content"),
    ("messages", 3, "content", 0),
    ("messages", 3, "content", 1, "image_url"),
    ("messages", 3, "content", 1, "image_url", "url"),
    ("temperature",),
    ("top_p",),
    ("max_tokens",),
    ("max_completion_tokens",),
    ("seed",),
    ("n",),
    ("stop",),
    ("tools",),
    ("tools", 0, "function"),
    ("tools", 0, "function", "parameters"),
    ("tool_choice",),
    ("parallel_tool_calls",),
    ("response_format",),
    ("logprobs",),
    ("top_logprobs",),
    ("user",),
    ("metadata",),
    ("logit_bias",),
    ("top_k",),
    ("stream",),
    ("stream_options",),
    ("stream_options", "include_usage"),
    ("thrifty",),
    ("thrifty", "timeout"),
    ("thrifty", "tenant"),
    ("thrifty", "cache"),
    ("presence_penalty",),
    ("frequency_penalty",),
]


def valid(model: str, stream: bool) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief", "name": "sys"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "http://x/i.png"}},
                ],
            },
        ],
        "temperature": 0.5,
        "max_tokens": 16,
        "stop": ["\n"],
        "user": "u1",
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "metadata": {"k": "v"},
        "stream": stream,
        "stream_options": {"include_usage": True},
        "thrifty": {"tenant": "t"},
    }


def put(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = body
    for key in path[:-1]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return
    last = path[-1]
    if isinstance(node, dict) or (isinstance(node, list) and isinstance(last, int) and last < len(node)):
        node[last] = value


OPENAI_ANSWER = fixture("openai_response_tools.json")
OPENAI_STREAM = sse([*fixture("openai_stream_text.json")["events"], "[DONE]"])
ANTHROPIC_ANSWER = fixture("anthropic_response_text.json")["upstream"]
ANTHROPIC_STREAM = sse(fixture("anthropic_stream_tool_use.json")["events"], named=True)


def upstream(request: HttpRequest) -> MockResponse:
    anthropic = request.url.endswith("/messages")
    if request.json().get("stream"):
        return MockResponse(chunks=[ANTHROPIC_STREAM if anthropic else OPENAI_STREAM])
    return MockResponse(json=ANTHROPIC_ANSWER if anthropic else OPENAI_ANSWER)


def direct_gateway(tmp: Path) -> Gateway:
    """Each provider translation on its own, over MockTransport."""
    transport = MockTransport(upstream)
    backends: dict[str, Backend] = {
        "fake": FakeBackend("fuzzed and fine"),
        "oa": OpenAIBackend(deployment("openai"), transport=transport),
        "an": AnthropicBackend(deployment("anthropic"), transport=transport),
    }
    return Gateway(
        parse_config({"server": {"data_dir": str(tmp / "direct")}}), backends=backends, observe=False
    )


def composed_gateway(tmp: Path) -> Gateway:
    """The stack from config: balanced groups, the exact cache, a rules router, the ledger."""
    config = parse_config(
        {
            "server": {"data_dir": str(tmp / "composed")},
            "models": [
                {"name": name, "deployments": [{"provider": "fake", "model": name}]}
                for name in ("small", "large")
            ],
            "cache": {"enabled": True},
            "routing": {
                "tiers": [
                    {"name": "fast", "model": "small", "price": {"input": 0.1, "output": 0.2}},
                    {"name": "smart", "model": "large", "price": {"input": 1.0, "output": 2.0}},
                ]
            },
        },
        source="fuzz.yaml",
    )
    return Gateway(config)


COMPOSED = ("small", "thrifty/auto")


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def clients(
    loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    gateways = {"direct": direct_gateway(tmp), "composed": composed_gateway(tmp)}
    made = {}
    for name, gateway in gateways.items():
        loop.run_until_complete(gateway.start())
        transport = httpx.ASGITransport(app=create_app(gateway))
        made[name] = httpx.AsyncClient(transport=transport, base_url="http://thrifty")
    yield made
    for name, gateway in gateways.items():
        loop.run_until_complete(made[name].aclose())
        loop.run_until_complete(gateway.aclose())


@given(
    model=st.sampled_from(MODELS + COMPOSED),
    stream=st.booleans(),
    mutations=st.lists(st.tuples(st.sampled_from(PATHS), odd), min_size=1, max_size=3),
)
@settings(
    max_examples=800,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_mutated_chat_bodies_never_get_a_5xx_and_every_4xx_names_the_problem(
    loop: asyncio.AbstractEventLoop,
    clients: dict[str, httpx.AsyncClient],
    model: str,
    stream: bool,
    mutations: list[tuple[tuple[Any, ...], Any]],
) -> None:
    body = valid(model, stream)
    for path, value in mutations:
        put(body, path, value)
    # Python's encoder writes what orjson will not: NaN, Infinity, lone surrogates as \\u escapes.
    raw = json.dumps(body, allow_nan=True).encode()
    client = clients["composed" if model in COMPOSED else "direct"]
    r = loop.run_until_complete(client.post("/v1/chat/completions", content=raw))
    assert r.status_code < 500, (raw[:500], r.text[:500])
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"].strip(), r.text
        assert isinstance(error["type"], str) and error["type"]
    elif stream:
        assert "data: [DONE]" in r.text
        assert '"error"' not in r.text, (raw[:500], r.text[:500])
