"""Costs come from the bundled genai-prices table, once per deployment, without network."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import genai_prices
import pytest

from thrifty import prices
from thrifty.config import Config, Deployment
from thrifty.observe import Observer

from .helpers import event, make_config, served


def dep(**kw: Any) -> Deployment:
    fields: dict[str, Any] = {
        "name": "d",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": "https://api.openai.com/v1",
    }
    fields.update(kw)
    return Deployment(**fields)


def expected(model: str, provider: str, **usage: int) -> float:
    return float(
        genai_prices.calc_price(genai_prices.Usage(**usage), model, provider_id=provider).total_price
    )


def test_openai_rates_match_the_price_table() -> None:
    rates = prices.lookup(dep())
    assert rates.priced and rates.source == "openai:gpt-4o-mini"
    got = rates.cost(prompt=1000, completion=500, cached=400)
    want = expected("gpt-4o-mini", "openai", input_tokens=1000, output_tokens=500, cache_read_tokens=400)
    assert got == pytest.approx(want)


def test_provider_is_found_from_the_api_base() -> None:
    rates = prices.lookup(dep(model="deepseek-chat", api_base="https://api.deepseek.com/v1"))
    assert rates.source.startswith("deepseek:")


def test_anthropic_deployment_is_priced_as_anthropic() -> None:
    rates = prices.lookup(
        dep(provider="anthropic", model="claude-3-5-haiku-latest", api_base="https://api.anthropic.com/v1")
    )
    assert rates.source.startswith("anthropic:") and rates.output > rates.input > 0


@pytest.mark.parametrize(
    "deployment",
    [
        dep(provider="local", model="smollm2", api_base=None),
        dep(model="gpt-4o", api_base="http://127.0.0.1:8080/v1"),  # a server on this machine
        dep(price_model="free"),
    ],
)
def test_models_on_this_machine_cost_nothing(deployment: Deployment) -> None:
    rates = prices.lookup(deployment)
    assert rates.priced and rates.source == "local" and rates.cost(1000, 1000, 0) == 0


def test_price_model_prices_a_loopback_server_as_a_named_model() -> None:
    rates = prices.lookup(
        dep(model="my-finetune", api_base="http://127.0.0.1:9000/v1", price_model="openai/gpt-4o")
    )
    assert rates.source == "openai:gpt-4o"


def test_unknown_models_cost_nothing_and_are_marked_unpriced() -> None:
    rates = prices.lookup(dep(model="no-such-model-xyz", api_base="https://example.invalid/v1"))
    assert not rates.priced and rates.cost(1000, 1000, 0) == 0


async def test_local_tokens_count_and_unknown_models_show_as_unpriced(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        models=[
            {"name": "local", "deployments": [{"provider": "local", "model": "smollm2"}]},
            {
                "name": "odd",
                "deployments": [{"model": "openai/no-such-model-xyz", "api_base": "https://x.invalid/v1"}],
            },
        ],
    )
    obs = Observer(config)
    obs.record(event(1, model="local", deployment="local/local/smollm2"))
    obs.record(event(2, model="odd", deployment="odd/openai/no-such-model-xyz"))
    obs.absorb()
    tally = obs.tally
    assert tally.tokens.values[("local", "local/local/smollm2", "prompt")] == 1000
    assert tally.cost.total() == 0
    assert tally.unpriced.values == {("odd/openai/no-such-model-xyz",): 1.0}


def test_each_deployment_is_looked_up_once(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = prices.lookup

    def counting(d: Deployment) -> prices.Rates:
        calls.append(d.name)
        return real(d)

    monkeypatch.setattr(prices, "lookup", counting)
    obs = Observer(config)
    for i in range(200):
        obs.record(event(i, deployment=["fast/openai/gpt-4o-mini", "smart/openai/gpt-4o"][i % 2]))
    obs.absorb()
    assert sorted(calls) == sorted(set(calls))  # no deployment twice
    assert {"fast/openai/gpt-4o-mini", "smart/openai/gpt-4o"} <= set(calls)


async def test_pricing_touches_no_network(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kw: Any) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    obs = Observer(config)
    await obs.start()
    obs.record(event(1))
    await obs.aclose()
    assert obs.tally.cost.total() > 0
    from genai_prices import update_prices

    assert update_prices._shared_updater.ref_count == 0  # the web updater never started


def test_cache_hits_cost_nothing_but_count_in_the_no_cache_baseline(config: Config) -> None:
    obs = Observer(config)
    obs.record(event(1, **served(cache="hit-exact"), deployment=""))
    obs.record(event(2, **served(cache="miss")))
    obs.absorb()
    one = prices.lookup(dep()).full_cost(1000, 200)
    top = prices.lookup(dep(model="gpt-4o")).full_cost(1000, 200)
    assert obs.tally.cost.total() == pytest.approx(one)
    assert obs.tally.cost_nocache.total() == pytest.approx(2 * one)
    assert obs.tally.cost_top.total() == pytest.approx(2 * top)


def test_cache_writes_are_priced_as_the_table_prices_them() -> None:
    rates = prices.lookup(
        dep(provider="anthropic", model="claude-sonnet-4-5", api_base="https://api.anthropic.com/v1")
    )
    got = rates.cost(prompt=3000, completion=100, cached=1000, written=1500)
    want = expected(
        "claude-sonnet-4-5",
        "anthropic",
        input_tokens=3000,
        output_tokens=100,
        cache_read_tokens=1000,
        cache_write_tokens=1500,
    )
    assert got == pytest.approx(want)
    assert got > rates.cost(prompt=3000, completion=100, cached=1000)  # writing to the cache costs extra


def test_reasoning_tokens_are_priced_as_the_table_prices_them() -> None:
    rates = prices.lookup(dep(model="sonar-deep-research", price_model="perplexity/sonar-deep-research"))
    got = rates.cost(prompt=100, completion=1000, cached=0, reasoning=600)
    want = expected(
        "sonar-deep-research", "perplexity", input_tokens=100, output_tokens=1000, output_reasoning_tokens=600
    )
    assert got == pytest.approx(want)
    assert got != pytest.approx(rates.cost(prompt=100, completion=1000, cached=0))


def test_usage_reads_cache_and_reasoning_details_from_openai_and_anthropic() -> None:
    from thrifty.providers.anthropic_stream import usage_from
    from thrifty.types import Usage

    openai_usage = Usage.from_json(
        {
            "prompt_tokens": 1200,
            "completion_tokens": 900,
            "prompt_tokens_details": {"cached_tokens": 1024},
            "completion_tokens_details": {"reasoning_tokens": 640},
        }
    )
    assert (openai_usage.cached_tokens, openai_usage.reasoning_tokens) == (1024, 640)
    assert Usage.from_json(openai_usage.to_json()) == openai_usage  # survives the gateway's own JSON
    anthropic = usage_from(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_creation_input_tokens": 300,
            "cache_read_input_tokens": 200,
        }
    )
    assert (anthropic.prompt_tokens, anthropic.cached_tokens, anthropic.cache_write_tokens) == (510, 200, 300)


def test_the_ledger_prices_cache_writes(tmp_path: Path) -> None:
    config = make_config(
        tmp_path,
        models=[
            {
                "name": "claude",
                "deployments": [{"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "x"}],
            }
        ],
    )
    deployment = config.models[0].deployments[0]
    obs = Observer(config)
    obs.record(
        event(1, deployment=deployment.name, model="claude", prompt_tokens=1000, cache_write_tokens=400)
    )
    obs.absorb()
    rates = prices.lookup(deployment)
    assert obs.tally.cost.total() == pytest.approx(rates.cost(1000, 200, 0, written=400))
    assert obs.tally.cost.total() > rates.cost(1000, 200, 0)
