from __future__ import annotations

from typing import Any

import pytest

from thrifty.backend import Backend
from thrifty.errors import InvalidRequest, UpstreamConnectionError
from thrifty.routing import Router, build_routers, explain
from thrifty.testing import FakeBackend, chat
from thrifty.types import parsed

from .conftest import make_config

EASY = "Translate 'good morning' to French."
HARD = (
    "Design a distributed, scalable microservice architecture for payments. First, explain the "
    "security threat model (injection, authentication, encryption); then analyse the performance "
    "bottlenecks and latency trade-offs step by step. Refactor api/server.py and db/schema.sql.\n"
    "```python\ndef handler(req):\n    return db.query(req)\n```\nWhat fails first? Why? How would you test it?"
)


def fakes() -> dict[str, FakeBackend]:
    return {name: FakeBackend(f"answer from {name}", name=name) for name in ("small", "medium", "large")}


def routers(
    tiers: list[dict[str, Any]], backends: dict[str, FakeBackend], **routing: Any
) -> dict[str, Backend]:
    groups: dict[str, Backend] = dict(backends)
    return build_routers(make_config({"tiers": tiers, **routing}), groups)


def only(routing: dict[str, Backend]) -> Router:
    router = next(iter(routing.values()))
    assert isinstance(router, Router)
    return router


async def test_rules_send_easy_prompts_cheap_and_hard_ones_up(tiers: list[dict[str, Any]]) -> None:
    backends = fakes()
    router = only(routers(tiers, backends))
    easy, hard = chat(EASY, model="thrifty/auto"), chat(HARD, model="thrifty/auto")
    assert (await router.complete(easy)).text == "answer from small"
    assert (await router.complete(hard)).text == "answer from large"
    # the backend sees the tier's model group, and the header says what happened
    assert backends["small"].requests[0].model == "small"
    assert easy.trace.annotations["route"].startswith("policy=rules model=fast score=")
    assert hard.trace.annotations["route"].endswith("escalations=0")
    decision = router.decision_for(hard.trace.request_id)
    assert decision is not None and decision.features["security"] > 0
    assert router.status()["requests_by_tier"] == {"fast": 1, "balanced": 0, "powerful": 1}
    assert router.status()["cost_usd_by_tier"]["powerful"] > 0


async def test_client_can_override_policy_or_tier(tiers: list[dict[str, Any]]) -> None:
    router = only(routers(tiers, fakes()))
    forced = chat(EASY)
    forced.options["route"] = {"tier": "powerful"}
    assert (await router.complete(forced)).text == "answer from large"
    header = chat(EASY)
    header.options["route-policy"] = "cascade"
    await router.complete(header)
    assert header.trace.annotations["route"].startswith("policy=cascade")


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"route": "wizardry"}, "route"),
        ({"route": {"policy": "magic"}}, "route"),
        ({"route": {"tier": "huge"}}, "route"),
        ({"route": {"speed": 1}}, "route"),
        ({"route": 7}, "route"),
        ({"route-policy": "nope"}, "route-policy"),
        ({"route": "learned"}, "route"),  # no fitted file configured
    ],
)
async def test_bad_overrides_are_invalid_requests_naming_the_option(
    tiers: list[dict[str, Any]], options: dict[str, Any], param: str
) -> None:
    router = only(routers(tiers, fakes()))
    request = chat(EASY)
    request.options.update(options)
    with pytest.raises(InvalidRequest) as info:
        await router.complete(request)
    assert info.value.param == param


async def test_missing_fitted_file_falls_back_to_default_and_never_fails(
    tiers: list[dict[str, Any]], tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    spec = {"name": "thrifty/learned", "policy": "learned", "model_file": str(tmp_path / "missing.npz")}
    router = only(routers(tiers, fakes(), routers=[spec], default="balanced"))
    first, second = chat(EASY), chat(HARD)
    assert (await router.complete(first)).text == "answer from medium"
    assert (await router.complete(second)).text == "answer from medium"
    assert "missing.npz" in first.trace.annotations["route-fallback"]
    assert "fallback=1" in first.trace.annotations["route"]
    assert router.status()["fallbacks"] == 2
    assert sum("falls back" in r.message for r in caplog.records) == 1  # logged once


async def test_corrupt_fitted_file_falls_back(tiers: list[dict[str, Any]], tmp_path: Any) -> None:
    bad = tmp_path / "router.npz"
    bad.write_bytes(b"not a zip file at all")
    spec = {"name": "r", "policy": "learned", "model_file": str(bad)}
    router = only(routers(tiers, fakes(), routers=[spec]))
    request = chat(EASY)
    await router.complete(request)
    assert "corrupt" in request.trace.annotations["route-fallback"]


async def test_streaming_through_a_rules_router(tiers: list[dict[str, Any]]) -> None:
    router = only(routers(tiers, fakes()))
    request = chat(EASY)
    chunks = [parsed(c) async for c in router.stream(request)]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "answer from small"
    assert chunks[-1]["usage"]["completion_tokens"] == 3
    assert request.trace.annotations["route"].startswith("policy=rules model=fast")


async def test_tools_skip_tiers_without_the_capability(tiers: list[dict[str, Any]]) -> None:
    tiers[0]["capabilities"] = ["chat"]
    tiers[1]["capabilities"] = ["chat", "tools"]
    router = only(routers(tiers, fakes()))
    request = chat(EASY, tools=[{"type": "function", "function": {"name": "f"}}])
    assert (await router.complete(request)).text == "answer from medium"


async def test_upstream_failure_is_counted_and_raised(tiers: list[dict[str, Any]]) -> None:
    backends = fakes()
    backends["small"] = FakeBackend([UpstreamConnectionError("down")], name="small")
    router = only(routers(tiers, backends))
    with pytest.raises(UpstreamConnectionError):
        await router.complete(chat(EASY))
    assert router.status()["failures"] == 1


def test_explain_shows_features_and_each_routers_choice(tiers: list[dict[str, Any]]) -> None:
    config = make_config(
        {
            "tiers": tiers,
            "routers": [
                {"name": "auto", "policy": "rules"},
                {"name": "casc", "policy": "cascade", "candidates": ["fast", "powerful"]},
            ],
        }
    )
    easy, hard = explain(EASY, config), explain(HARD, config)
    assert easy["routers"]["auto"]["tier"] == "fast"
    assert hard["routers"]["auto"]["tier"] == "powerful"
    assert hard["complexity"] > easy["complexity"]
    assert easy["features"]["simple"] > 0
    assert easy["routers"]["casc"]["tier"] == "fast"


def test_no_routing_section_builds_nothing() -> None:
    assert build_routers(make_config(), {}) == {}


async def test_start_and_close_reach_every_tier(tiers: list[dict[str, Any]]) -> None:
    backends = fakes()
    router = only(routers(tiers, backends))
    await router.start()
    await router.aclose()
    assert all(b.started and b.closed for b in backends.values())
