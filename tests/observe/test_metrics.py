"""GET /metrics: valid Prometheus text with the figures the gateway recorded."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette

from thrifty.config import Config
from thrifty.observe import Observer

from .helpers import BIG, MINI, event, served


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def scrape(obs: Observer) -> str:
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


async def test_metrics_count_requests_errors_tokens_cache_routes_and_components(config: Config) -> None:
    obs = Observer(config)
    obs.add_gauge_source("Breaker:fast", lambda: {"state": "open", "failures": 3})  # type: ignore[dict-item]
    obs.add_gauge_source("Admission:fast", lambda: {"queue_depth": 7.0})
    obs.record(event(1, **served("fast", "miss"), ttft_s=0.1, stream=True))
    obs.record(event(2, **served("smart", "hit-semantic", escalations=2)))
    obs.record(event(3, deployment=BIG, model="smart", status=504, error_type="timeout_error"))
    got = samples(await scrape(obs))
    assert got[("thrifty_requests_total", (("deployment", MINI), ("model", "fast"), ("status", "200")))] == 2
    assert got[("thrifty_errors_total", (("type", "timeout_error"),))] == 1
    assert (
        got[("thrifty_tokens_total", (("deployment", MINI), ("kind", "prompt"), ("model", "fast")))] == 2000
    )
    assert got[("thrifty_cache_requests_total", (("level", "semantic"), ("result", "hit")))] == 1
    assert got[("thrifty_cache_requests_total", (("level", ""), ("result", "miss")))] == 1
    assert got[("thrifty_route_decisions_total", (("tier", "fast"),))] == 1
    assert got[("thrifty_route_decisions_total", (("tier", "smart"),))] == 1
    assert got[("thrifty_escalations_total", ())] == 2
    assert got[("thrifty_request_latency_seconds_count", (("model", "fast"),))] == 2
    assert got[("thrifty_time_to_first_token_seconds_count", (("model", "fast"),))] == 1
    assert got[("thrifty_overhead_seconds_count", ())] == 3
    assert got[("thrifty_component", (("key", "state"), ("source", "Breaker:fast")))] == 2  # open
    assert got[("thrifty_component", (("key", "queue_depth"), ("source", "Admission:fast")))] == 7
    assert got[("thrifty_cost_usd_total", (("deployment", MINI), ("model", "fast")))] > 0
    assert got[("thrifty_resident_memory_bytes", ())] > 0


async def test_each_observer_counts_only_its_own_requests(config: Config) -> None:
    one, two = Observer(config), Observer(config)
    one.record(event(1))
    requests = ("thrifty_requests_total", (("deployment", MINI), ("model", "fast"), ("status", "200")))
    assert samples(await scrape(one))[requests] == 1
    assert not any(name == "thrifty_requests_total" for name, _ in samples(await scrape(two)))


async def test_a_failing_gauge_source_does_not_break_the_scrape(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    obs = Observer(config)

    def broken() -> dict[str, float]:
        raise RuntimeError("boom")

    obs.add_gauge_source("Broken:x", broken)
    obs.record(event(1))
    got = samples(await scrape(obs))
    assert got[("thrifty_request_latency_seconds_count", (("model", "fast"),))] == 1
    assert "Broken:x" in caplog.text


async def test_label_values_are_escaped(config: Config) -> None:
    obs = Observer(config)
    obs.record(event(1, model='we"ird\\model\nname'))
    got = samples(await scrape(obs))
    assert got[("thrifty_request_latency_seconds_count", (("model", 'we"ird\\model\nname'),))] == 1
