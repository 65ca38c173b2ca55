from __future__ import annotations

from typing import Any

import pytest

from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.prices import PriceTable
from thrifty.routing import parse_routing

from .conftest import make_config


def test_no_routing_section_means_no_routers() -> None:
    assert parse_routing(make_config()) is None


def test_tiers_keep_order_prices_and_capabilities(tiers: list[dict[str, Any]]) -> None:
    tiers[0]["capabilities"] = ["chat"]
    routing = parse_routing(make_config({"tiers": tiers}))
    assert routing is not None
    assert [t.name for t in routing.tiers] == ["fast", "balanced", "powerful"]
    assert routing.tier("powerful").cost(1_000_000, 0) == pytest.approx(10.0)
    assert routing.tier("fast").capabilities == frozenset({"chat"})
    # a default router is made when none is configured
    assert routing.routers[0].name == "thrifty/auto" and routing.routers[0].policy == "rules"


def test_price_comes_from_the_price_table_or_is_free_for_local_models() -> None:
    config = parse_config(
        {
            "models": [
                {"name": "local", "deployments": [{"provider": "local", "model": "smollm2"}]},
                {"name": "gpt", "deployments": [{"provider": "openai", "model": "gpt-4o", "api_key": "k"}]},
            ],
            "routing": {"tiers": [{"name": "fast", "model": "local"}, {"name": "big", "model": "gpt"}]},
        },
        source="c.yaml",
    )
    routing = parse_routing(config)
    assert routing is not None
    assert routing.tier("fast").input_price == 0.0
    assert routing.tier("big").input_price == pytest.approx(2.5)
    assert routing.tier("big").output_price == pytest.approx(10.0)


def test_router_and_ledger_agree_that_loopback_and_free_deployments_cost_nothing() -> None:
    vllm = {"provider": "openai", "model": "Qwen/Qwen2.5-7B-Instruct", "api_base": "http://127.0.0.1:8000/v1"}
    free = {
        "provider": "openai",
        "model": "my-finetune",
        "api_base": "https://gpu.example.com/v1",
        "price_model": "free",
        "api_key": "k",
    }
    config = parse_config(
        {
            "models": [{"name": "vllm", "deployments": [vllm]}, {"name": "own", "deployments": [free]}],
            "routing": {"tiers": [{"name": "fast", "model": "vllm"}, {"name": "big", "model": "own"}]},
        },
        source="c.yaml",
    )
    routing = parse_routing(config)  # no price demanded for either
    assert routing is not None
    ledger = PriceTable(config)
    for tier in routing.tiers:
        deployment = config.group(tier.group).deployments[0]  # type: ignore[union-attr]
        assert tier.cost(1000, 1000) == 0.0
        assert ledger.rates(deployment.name).cost(1000, 1000, 0) == 0.0
        assert ledger.rates(deployment.name).priced


def test_router_prices_a_tier_as_the_ledger_does() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "name": "gpt",
                    "deployments": [{"provider": "openai", "model": "gpt-4o-mini", "api_key": "k"}],
                }
            ],
            "routing": {"tiers": [{"name": "t", "model": "gpt"}]},
        },
        source="c.yaml",
    )
    routing = parse_routing(config)
    assert routing is not None
    rates = PriceTable(config).rates(config.models[0].deployments[0].name)
    assert rates.input > 0
    assert routing.tier("t").cost(1000, 500) == pytest.approx(rates.cost(1000, 500, 0))


def test_unknown_price_names_the_key() -> None:
    config = parse_config(
        {
            "models": [
                {
                    "name": "x",
                    "deployments": [{"provider": "openai", "model": "no-such-model-zz", "api_key": "k"}],
                }
            ],
            "routing": {"tiers": [{"name": "t", "model": "x"}]},
        },
        source="c.yaml",
    )
    with pytest.raises(ConfigError, match=r"c\.yaml: routing\.tiers\[0\]\.price"):
        parse_routing(config)


@pytest.mark.parametrize(
    ("router", "key"),
    [
        ({"name": "r", "policy": "magic"}, r"routing\.routers\[0\]\.policy: unknown policy 'magic'"),
        ({"name": "r", "candidates": []}, r"routing\.routers\[0\]\.candidates: must be a non-empty"),
        ({"name": "r", "candidates": ["nope"]}, r"routing\.routers\[0\]\.candidates\[0\]: unknown tier"),
        (
            {"name": "r", "thresholds": [0.2, 1.5]},
            r"routing\.routers\[0\]\.thresholds\[1\]: must be a number in \[0, 1\]",
        ),
        ({"name": "r", "thresholds": [0.6, 0.2]}, r"thresholds\[1\]: thresholds must be ascending"),
        ({"name": "r", "thresholds": [0.5]}, r"routing\.routers\[0\]\.thresholds: must be a list of 2"),
        ({"name": "r", "policy": "cascade", "accept": 2}, r"routing\.routers\[0\]\.accept: must be a score"),
        ({"name": "r", "policy": "cascade", "accept": {"fast": -1}}, r"routers\[0\]\.accept\.fast: must be"),
        ({"name": "r", "quality_target": 1.2}, r"routers\[0\]\.quality_target: must be a number in \[0, 1\]"),
        ({"name": "r", "verifier": "judge"}, r"routers\[0\]\.judge: verifier 'judge' needs"),
        ({"name": "r", "colour": "red"}, r"routers\[0\]\.colour: unknown setting"),
    ],
)
def test_bad_router_settings_stop_startup_naming_file_and_key(
    tiers: list[dict[str, Any]], router: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError, match="thrifty.yaml: " + key if key.startswith("routing") else key):
        parse_routing(make_config({"tiers": tiers, "routers": [router]}))


def test_unknown_model_group_and_default_are_named(tiers: list[dict[str, Any]]) -> None:
    tiers[1]["model"] = "ghost"
    with pytest.raises(ConfigError, match=r"routing\.tiers\[1\]\.model: unknown model group 'ghost'"):
        parse_routing(make_config({"tiers": tiers}))
    with pytest.raises(ConfigError, match=r"routing\.default: unknown tier 'huge'"):
        parse_routing(
            make_config({"tiers": [dict(t, model=t["model"]) for t in tiers[:1]], "default": "huge"})
        )


def test_feedback_is_off_by_default_and_on_with_one_setting(tiers: list[dict[str, Any]]) -> None:
    off = parse_routing(make_config({"tiers": tiers}))
    on = parse_routing(make_config({"tiers": tiers, "feedback": True}))
    assert off is not None and not off.feedback.enabled
    assert on is not None and on.feedback.enabled
