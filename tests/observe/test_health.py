"""Rolling latency percentiles, alert rules and their config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from thrifty.errors import ConfigError
from thrifty.observe import Observer

from .helpers import event, make_config, served


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def observer(tmp_path: Path, clock: Clock, **alerts: Any) -> Observer:
    settings = {"min_requests": 10, "memory_mb": None, **alerts}
    return Observer(make_config(tmp_path, alerts=settings), clock=clock)


def rules(obs: Observer) -> dict[str, str]:
    return {a.rule + (f":{a.subject}" if a.subject else ""): a.message for a in obs.alerts()}


def test_p95_alert_fires_per_model_group_and_clears_when_the_window_passes(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock, window_s=60)
    for i in range(20):
        obs.record(event(i, ts=clock.now, model="smart", latency_s=3.0 if i % 4 == 0 else 0.5))
        obs.record(event(100 + i, ts=clock.now, model="fast", latency_s=0.1))
    fired = rules(obs)
    assert "p95_latency_s:smart" in fired and "p95_latency_s:fast" not in fired
    assert fired["p95_latency_s:smart"] == "p95 latency of smart is 3 s, above the limit of 2 s"
    clock.now += 120
    assert "p95_latency_s:smart" not in rules(obs)


def test_percentiles_are_computed_over_the_window(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock)
    for i in range(100):
        obs.record(event(i, ts=clock.now, latency_s=(i + 1) / 100))
    from thrifty.observe.stats import snapshot

    latency = snapshot(obs)["latency"]["fast"]
    assert latency["requests"] == 100
    assert latency["p50"] == pytest.approx(0.5, abs=0.011)
    assert latency["p95"] == pytest.approx(0.95, abs=0.011)
    assert latency["p99"] == pytest.approx(0.99, abs=0.011)


def test_rate_rules_wait_for_enough_samples_then_fire(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock)
    for i in range(5):
        obs.record(event(i, ts=clock.now, **served("strong", "miss")))
    assert not rules(obs)
    for i in range(5, 12):
        obs.record(event(i, ts=clock.now, **served("strong", "miss")))
    fired = rules(obs)
    assert fired["cache_hit_rate"] == "cache hit rate is 0%, below the limit of 30%"
    assert fired["fast_tier_share"] == "fast-tier share is 0%, below the limit of 30%"


def test_healthy_traffic_raises_no_alert(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock)
    for i in range(30):
        cache = "hit-exact" if i % 2 else "miss"
        obs.record(event(i, ts=clock.now, **served("fast", cache)))
    assert rules(obs) == {}


def test_startup_memory_and_parallel_rules(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock, memory_mb=1)
    obs.mark_ready(0.8)
    obs.add_gauge_source("agent", lambda: {"speedup": 1.2, "parallel_share": 0.25})
    fired = rules(obs)
    assert fired["startup_ms"] == "startup time is 800 ms, above the limit of 500 ms"
    assert fired["parallel_tool_calls"].startswith("share of tool calls run in parallel is 25%")
    assert fired["memory_mb"].startswith("resident memory is ")


def test_a_rule_set_to_null_is_off(tmp_path: Path) -> None:
    obs = observer(tmp_path, Clock(), startup_ms=None)
    obs.mark_ready(5.0)
    assert "startup_ms" not in rules(obs)


async def test_admin_alerts_endpoint_lists_active_alerts(tmp_path: Path) -> None:
    obs = observer(tmp_path, Clock())
    obs.mark_ready(2.0)
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        body = (await client.get("/admin/alerts")).json()
    assert [a["rule"] for a in body["alerts"]] == ["startup_ms"]
    assert body["alerts"][0]["value"] == pytest.approx(2000)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        (
            {"alerts": {"p95_latency_s": -1}},
            "thrifty.yaml: alerts.p95_latency_s: must be a non-negative number",
        ),
        ({"alerts": {"cache_hit_rate": 30}}, "thrifty.yaml: alerts.cache_hit_rate: is a share from 0 to 1"),
        ({"alerts": {"p95": 2}}, "thrifty.yaml: alerts.p95: unknown setting"),
        ({"alerts": {"window_s": 0}}, "thrifty.yaml: alerts.window_s: must be a positive number"),
        ({"alerts": {"fast_tiers": [1]}}, "thrifty.yaml: alerts.fast_tiers: must be a list of tier names"),
        ({"alerts": "on"}, "thrifty.yaml: alerts: must be a mapping"),
        ({"ledger": {"flush_ms": 0}}, "thrifty.yaml: ledger.flush_ms: must be a positive number"),
        ({"ledger": {"path": ""}}, "thrifty.yaml: ledger.path: must be a non-empty string"),
        ({"ledger": {"batch_rows": 1.5}}, "thrifty.yaml: ledger.batch_rows: must be a positive integer"),
    ],
)
def test_bad_settings_name_file_and_key(tmp_path: Path, sections: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Observer(make_config(tmp_path, **sections))
    assert str(info.value).startswith(message)


def test_routed_requests_count_toward_the_group_that_served_them(tmp_path: Path) -> None:
    clock = Clock()
    obs = observer(tmp_path, clock)
    for i in range(20):
        slow = i % 2 == 0
        obs.record(
            event(
                i,
                ts=clock.now,
                model="auto",
                latency_s=3.0 if slow else 0.1,
                **served("smart" if slow else "fast"),
            )
        )
    assert set(rules(obs)) == {"p95_latency_s:smart"}


def test_an_alert_is_logged_when_it_starts_and_when_it_clears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="thrifty.observe")
    obs = observer(tmp_path, Clock())
    obs.mark_ready(0.9)
    obs.alerts()
    obs.alerts()
    obs.mark_ready(0.1)
    obs.alerts()
    messages = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert")]
    assert messages == [
        "alert: startup time is 900 ms, above the limit of 500 ms",
        "alert cleared: startup time is 900 ms, above the limit of 500 ms",
    ]
