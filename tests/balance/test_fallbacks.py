"""Requests move to fallback groups when a group fails or the prompt is too long."""

from __future__ import annotations

import random
from typing import Any

import pytest

from thrifty.backend import Backend
from thrifty.balance import FakeClock, build_fallbacks, build_group
from thrifty.config import parse_config
from thrifty.errors import ContextWindowExceeded, ThriftyError, UpstreamConnectionError, UpstreamStatusError
from thrifty.testing import FakeBackend, chat
from thrifty.types import parsed


def build(spec: dict[str, tuple[list[FakeBackend], dict[str, Any]]]) -> dict[str, Backend]:
    models = []
    for name, (backends, options) in spec.items():
        deps = [
            {"model": f"fake/{b.name}", "name": b.name, **options.pop("deployment", {})} for b in backends
        ]
        models.append({"name": name, "deployments": deps, "retries": 0, **options})
    config = parse_config({"models": models}, source="test.yaml")
    clock = FakeClock()
    groups = {
        g.name: build_group(g, spec[g.name][0], config, clock=clock, rng=random.Random(0))
        for g in config.models
    }
    return build_fallbacks(config, groups)


def down() -> UpstreamConnectionError:
    return UpstreamConnectionError("refused")


async def test_falls_back_in_order_when_the_group_fails() -> None:
    groups = build(
        {
            "local": ([FakeBackend(lambda r: down(), name="llama")], {"fallbacks": ["cheap", "cloud"]}),
            "cheap": ([FakeBackend(lambda r: down(), name="cheap-1")], {}),
            "cloud": ([FakeBackend("from cloud", name="gpt")], {}),
        }
    )
    request = chat("hi", model="local")
    response = await groups["local"].complete(request)
    assert response.text == "from cloud"
    assert request.trace.annotations["fallback"] == "local->cloud"


async def test_no_fallback_for_the_clients_own_error() -> None:
    cloud = FakeBackend("from cloud", name="gpt")
    groups = build(
        {
            "local": (
                [FakeBackend([UpstreamStatusError("bad", upstream_status=400)], name="llama")],
                {"fallbacks": ["cloud"]},
            ),
            "cloud": ([cloud], {}),
        }
    )
    with pytest.raises(UpstreamStatusError):
        await groups["local"].complete(chat("hi"))
    assert cloud.requests == []


async def test_context_window_fallback_on_error() -> None:
    groups = build(
        {
            "small": (
                [FakeBackend([ContextWindowExceeded("too long")], name="s")],
                {"context_window_fallbacks": ["big"], "fallbacks": ["other"]},
            ),
            "big": ([FakeBackend("big answer", name="b")], {}),
            "other": ([FakeBackend("wrong", name="o")], {}),
        }
    )
    assert (await groups["small"].complete(chat("hi"))).text == "big answer"


async def test_context_window_fallback_from_the_prompt_estimate() -> None:
    small = FakeBackend("small answer", name="s")
    groups = build(
        {
            "small": ([small], {"context_window_fallbacks": ["big"], "deployment": {"context_window": 50}}),
            "big": ([FakeBackend("big answer", name="b")], {}),
        }
    )
    assert (await groups["small"].complete(chat("short"))).text == "small answer"
    long_prompt = chat("word " * 400)
    assert (await groups["small"].complete(long_prompt)).text == "big answer"
    assert len(small.requests) == 1


async def test_stream_falls_back_before_the_first_chunk() -> None:
    groups = build(
        {
            "local": ([FakeBackend([down()], name="llama")], {"fallbacks": ["cloud"]}),
            "cloud": ([FakeBackend("streamed", name="gpt")], {}),
        }
    )
    request = chat("hi", model="local")
    chunks = [parsed(c) async for c in groups["local"].stream(request)]
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") == "streamed" for c in chunks)
    assert request.trace.annotations["fallback"] == "local->cloud"


async def test_last_error_is_raised_when_every_fallback_fails() -> None:
    groups = build(
        {
            "a": ([FakeBackend(lambda r: down(), name="a1")], {"fallbacks": ["b"]}),
            "b": ([FakeBackend(lambda r: down(), name="b1")], {}),
        }
    )
    with pytest.raises(UpstreamConnectionError):
        await groups["a"].complete(chat("hi"))


def test_unknown_fallback_group_names_file_and_key() -> None:
    with pytest.raises(ThriftyError, match=r"test.yaml: models\[name=a\].fallbacks: .*'nope'"):
        build({"a": ([FakeBackend(name="a1")], {"fallbacks": ["nope"]})})
