"""The compress layer in the stack: who turns it on, what reaches the upstream, what the trace says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from thrifty.compose import Stack
from thrifty.compress import parse_settings, wrap_compress
from thrifty.compress.layer import CompressLayer
from thrifty.compress.settings import CompressSettings, Knobs, request_knobs
from thrifty.config import parse_config
from thrifty.errors import ConfigError, InvalidRequest
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, parsed, trace_notes

from .histories import TOOLS, agent_history, chat_history


def config(**compress: Any) -> Any:
    section = {"compress": compress} if compress else {}
    return parse_config(
        {**section, "models": [{"name": "m", "deployments": [{"provider": "fake", "model": "x"}]}]},
        source="thrifty.yaml",
    )


def layer(settings: CompressSettings | None = None) -> tuple[CompressLayer, FakeBackend]:
    fake = FakeBackend("ok")
    return CompressLayer(fake, "m", settings or CompressSettings()), fake


def request(messages: list[dict[str, Any]], **options: Any) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, options=options)


async def test_off_by_default_the_request_goes_through_as_it_came() -> None:
    compress, fake = layer(parse_settings(config(), config().models[0]))
    req = request(agent_history())
    await compress.complete(req)
    assert fake.requests[0] is req
    assert req.trace.compress is None and "compress" not in trace_notes(req.trace)


@pytest.mark.parametrize("option", ["balanced", {"mode": "balanced"}, "balanced, budget_tokens=300", True])
async def test_a_request_can_ask_for_compression(option: Any) -> None:
    compress, fake = layer()
    history = chat_history()
    req = request(history, compress=option)
    await compress.complete(req)
    sent = fake.requests[0]
    assert sent.trace is req.trace
    assert sent.messages[-1] == history[-1]
    outcome = req.trace.compress
    assert outcome is not None and outcome.mode == "balanced" and outcome.tokens_after < outcome.tokens_before
    header = trace_notes(req.trace)["compress"]
    assert header.startswith(f"balanced {outcome.tokens_before:,}->{outcome.tokens_after:,} tokens")
    assert "near-duplicate=" in header


async def test_streams_are_compressed_too() -> None:
    compress, fake = layer()
    req = request(chat_history(), compress="aggressive, ratio=0.2")
    chunks = [parsed(c) async for c in compress.stream(req)]
    assert (
        chunks[-1]["usage"]["prompt_tokens"] < FakeBackend()._usage(request(chat_history()), "").prompt_tokens
    )
    assert req.trace.compress is not None and req.trace.compress.mode == "aggressive"
    assert fake.requests[0].messages[-1] == chat_history()[-1]


async def test_a_group_and_a_key_choose_their_modes_and_a_request_overrides_them() -> None:
    cfg = parse_config(
        {
            "compress": {"keys": {"key_agent": "aggressive"}},
            "models": [
                {"name": "m", "deployments": [{"provider": "fake", "model": "x"}], "compress": "minimal"}
            ],
        },
        source="thrifty.yaml",
    )
    settings = parse_settings(cfg, cfg.models[0])
    assert request_knobs(settings, {}).mode == "minimal"
    assert request_knobs(settings, {}, "key_agent").mode == "aggressive"
    assert request_knobs(settings, {"compress": "off"}, "key_agent").mode == "off"
    compress, fake = layer(settings)
    req = request(agent_history())
    req.trace.key_id = "key_agent"
    await compress.complete(req)
    assert req.trace.compress is not None and req.trace.compress.mode == "aggressive"


async def test_short_prompts_and_prompts_that_cannot_shrink_go_unchanged() -> None:
    compress, fake = layer()
    short = request([{"role": "user", "content": "Hi there"}], compress="aggressive")
    await compress.complete(short)
    assert fake.requests[0] is short and short.trace.compress is not None
    assert trace_notes(short.trace)["compress"] == "aggressive skipped=short"
    tight = request([{"role": "user", "content": "word " * 400}], compress="balanced, min_tokens=1")
    await compress.complete(tight)
    assert fake.requests[1].messages is tight.messages
    assert tight.trace.compress is not None and tight.trace.compress.skipped == "no-gain"


async def test_tools_are_laid_out_in_a_stable_order_and_a_prompt_cache_key_is_named() -> None:
    compress, fake = layer(CompressSettings(knobs=Knobs(mode="minimal"), prompt_cache_key=True))
    reversed_tools = list(reversed(TOOLS))
    first = request(agent_history())
    first.params["tools"] = reversed_tools
    second = request(agent_history())
    second.params["tools"] = list(TOOLS)
    second.trace.tenant = first.trace.tenant = "team-a"
    await compress.complete(first)
    await compress.complete(second)
    a, b = fake.requests
    assert [t["function"]["name"] for t in a.params["tools"]] == ["read_file", "run_tests"]
    assert a.params["tools"] == b.params["tools"]
    assert a.extra["prompt_cache_key"] == b.extra["prompt_cache_key"]
    assert first.params["tools"] is reversed_tools  # the client's request is not changed


@pytest.mark.parametrize(
    ("option", "words"),
    [
        ("fast", "unknown mode 'fast'"),
        ("balanced, ratio=lots", "ratio must be a number"),
        ("aggressive, ratio=0", "must be above 0"),
        ("balanced, colour=red", "unknown setting 'colour'"),
        ({"mode": "balanced", "window": 3}, "unknown setting"),
        (42, "must be a mode"),
    ],
)
async def test_a_malformed_option_is_a_400_naming_the_problem(option: Any, words: str) -> None:
    compress, fake = layer()
    with pytest.raises(InvalidRequest) as info:
        await compress.complete(request(chat_history(), compress=option))
    assert words in info.value.message and info.value.param == "x-thrifty-compress"
    assert not fake.requests


@pytest.mark.parametrize(
    ("section", "words"),
    [
        ({"mode": "extreme"}, "compress.mode: unknown mode 'extreme'"),
        ({"ratio": 1.5}, "compress.ratio: must be a number in [0, 1]"),
        ({"scorer": "tfidf"}, "unknown scorer 'tfidf'"),
        ({"keys": {"k": "loud"}}, "compress.keys.k: unknown mode 'loud'"),
        ({"window": 3}, "compress.window: unknown setting"),
    ],
)
def test_config_errors_name_file_and_key(section: dict[str, Any], words: str) -> None:
    cfg = config(**section)
    with pytest.raises(ConfigError) as info:
        parse_settings(cfg, cfg.models[0])
    assert "thrifty.yaml" in str(info.value) and words in str(info.value)


def test_a_group_that_never_compresses_has_no_layer() -> None:
    cfg = parse_config(
        {"models": [{"name": "m", "deployments": [{"provider": "fake", "model": "x"}], "compress": False}]}
    )
    inner = FakeBackend()
    assert wrap_compress(inner, cfg.models[0], cfg) is inner
    assert isinstance(wrap_compress(inner, config().models[0], config()), CompressLayer)


def test_the_stack_puts_the_compressor_above_the_cache() -> None:
    from thrifty import compose
    from thrifty.cache.layer import CacheLayer

    cfg = parse_config(
        {
            "cache": {"ttl": 60, "l2_path": False},
            "models": [{"name": "m", "deployments": [{"provider": "fake", "model": "x"}]}],
        }
    )
    stack = compose.build(cfg)
    top = stack.backends["m"]
    assert isinstance(top, CompressLayer) and isinstance(top.inner, CacheLayer)
    assert [type(x).__name__ for x in Stack.walk_from(top)][:2] == ["CompressLayer", "CacheLayer"]


# -- through HTTP ----------------------------------------------------------------------


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    cfg = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "cache": {"ttl": 600},
            "models": [
                {
                    "name": "m",
                    "deployments": [{"provider": "fake", "model": "x", "options": {"script": "5 months"}}],
                }
            ],
        },
        source="thrifty.yaml",
    )
    gateway = Gateway(cfg, observe=False)
    await gateway.start()
    transport = httpx.ASGITransport(app=create_app(gateway))
    async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as c:
        yield c
    await gateway.aclose()


async def test_the_header_turns_it_on_and_the_response_says_what_it_saved(client: httpx.AsyncClient) -> None:
    body = {"model": "m", "messages": chat_history(), "temperature": 0}
    plain = await client.post("/v1/chat/completions", json=body)
    squeezed = await client.post("/v1/chat/completions", json={**body, "thrifty": {"compress": "aggressive"}})
    assert "x-thrifty-compress" not in plain.headers
    assert squeezed.headers["x-thrifty-compress"].startswith("aggressive ")
    assert squeezed.json()["usage"]["prompt_tokens"] < 0.5 * plain.json()["usage"]["prompt_tokens"]
    bad = await client.post("/v1/chat/completions", json=body, headers={"x-thrifty-compress": "loud"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "x-thrifty-compress"
    bad_stream = await client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers={"x-thrifty-compress": "loud"}
    )
    assert bad_stream.status_code == 400 and "unknown mode 'loud'" in bad_stream.json()["error"]["message"]
    streamed = await client.post(
        "/v1/chat/completions", json={**body, "stream": True}, headers={"x-thrifty-compress": "balanced"}
    )
    assert streamed.status_code == 200 and streamed.headers["x-thrifty-compress"].startswith("balanced ")


async def test_the_cache_keys_the_compressed_form(client: httpx.AsyncClient) -> None:
    history = agent_history()
    spaced = [*history[:-1], {"role": "assistant", "content": "  "}, history[-1]]  # an empty turn more
    headers = {"x-thrifty-compress": "minimal"}
    first = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": history, "temperature": 0}, headers=headers
    )
    second = await client.post(
        "/v1/chat/completions", json={"model": "m", "messages": spaced, "temperature": 0}, headers=headers
    )
    assert first.headers["x-thrifty-cache"] == "miss"
    assert second.headers["x-thrifty-cache"] == "hit-exact"


def test_the_command_line_prints_what_would_be_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from thrifty.cli import main

    path = tmp_path / "request.json"
    path.write_text(json.dumps({"model": "m", "messages": agent_history()}))
    assert main(["compress", str(path), "--mode", "minimal"]) == 0
    out, err = capsys.readouterr()
    sent = json.loads(out)
    assert sent["model"] == "m" and sent["messages"][-1] == agent_history()[-1]
    assert err.startswith("minimal: ") and "% saved" in err and "duplicate=2" in err
    path.write_text("[1, 2]")
    assert main(["compress", str(path)]) == 2
    assert "expected a chat request" in capsys.readouterr().err


class _Embedder:
    """Vectors by meaning, as the test defines it: texts about animals point one way."""

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> Any:
        import numpy as np

        self.calls += 1
        animal = ("zebra", "creature", "animal")
        return np.array(
            [[1.0, 0.0] if any(w in t.lower() for w in animal) else [0.0, 1.0] for t in texts],
            dtype=np.float32,
        )


async def test_the_hybrid_scorer_keeps_what_means_the_same_without_sharing_a_word() -> None:
    filler = [f"The quarterly report lists revenue line {i} and the costs of office rent." for i in range(40)]
    document = " ".join(filler[:20] + ["A zebra escaped from the city zoo on Tuesday."] + filler[20:])
    messages = [
        {"role": "user", "content": document},
        {"role": "assistant", "content": "Noted."},
        {"role": "user", "content": "Which creature got out?"},
    ]
    embedder = _Embedder()
    hybrid = CompressSettings(knobs=Knobs(mode="aggressive", scorer="hybrid", ratio=0.1))
    for settings, kept in (
        (hybrid, True),
        (CompressSettings(knobs=Knobs(mode="aggressive", ratio=0.1)), False),
    ):
        fake = FakeBackend("ok")
        await CompressLayer(fake, "m", settings, embedder).complete(request(messages))  # type: ignore[arg-type]
        assert ("zebra" in fake.requests[0].messages[0]["content"]) is kept
    assert embedder.calls == 1


async def test_the_layer_reports_what_it_saved() -> None:
    compress, _ = layer()
    assert compress.status() == {"compressed": 0, "tokens_in": 0, "tokens_saved": 0}
    await compress.complete(request(agent_history(), compress="minimal"))
    status = compress.status()
    assert status["compressed"] == 1 and 0 < status["tokens_saved"] < status["tokens_in"]
