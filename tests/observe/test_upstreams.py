"""Failures in plain sight: a dead deployment behind a fallback shows in /metrics, `thrifty top`,
the alerts, the stats JSON and the log (one line per kind of news, not one per failure)."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import openai
import pytest

from thrifty.balance.breaker import BreakerSettings
from thrifty.balance.clock import FakeClock
from thrifty.balance.events import Change, DeploymentCounts, GroupCounts, error_class
from thrifty.balance.member import Member
from thrifty.config import Deployment
from thrifty.errors import (
    RateLimited,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from thrifty.observe.health import Health, Needs, evaluate
from thrifty.observe.settings import AlertSettings, parse_alerts
from thrifty.observe.top import top_main
from thrifty.observe.upstreams import Upstreams
from thrifty.testing import FakeBackend
from thrifty.types import FallbackTaken

from .helpers import make_config
from .live import dead_primary

REQUESTS = 30


def test_a_dead_deployment_behind_a_fallback_is_seen_everywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="thrifty")
    # startup and memory rules off: this test's process is pytest, old and big
    with dead_primary(tmp_path, startup_ms=None, memory_mb=None) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="unused", max_retries=0)
        answers = [
            client.chat.completions.create(model="primary", messages=[{"role": "user", "content": f"q{i}"}])
            for i in range(REQUESTS)
        ]
        metrics = httpx.get(live.url + "/metrics").text
        alerts = httpx.get(live.url + "/admin/alerts").json()["alerts"]
        stats = httpx.get(live.url + "/dashboard/api/stats").json()
        assert top_main(["--url", live.url, "--iterations", "1"]) == 0
        screen = capsys.readouterr().out
    # every client got an answer: the failures are the operator's news, not the client's
    assert all((a.choices[0].message.content or "").startswith("from the backup") for a in answers)
    assert 'thrifty_breaker_state{group="primary",deployment="dead"} 2' in metrics
    assert 'thrifty_breaker_opened_total{group="primary",deployment="dead"} 1' in metrics
    assert 'thrifty_upstream_errors_total{group="primary",deployment="dead",class="connection"} 5' in metrics
    assert 'thrifty_upstream_errors_total{group="backup",deployment="alive",class="connection"} 0' in metrics
    assert f'thrifty_fallbacks_taken_total{{from="primary",to="backup"}} {REQUESTS}' in metrics
    assert 'thrifty_alert_active{rule="deployment_down_s",subject="dead"} 1' in metrics
    rules = {(a["rule"], a["subject"]) for a in alerts}
    assert ("deployment_down_s", "dead") in rules
    assert ("fallback_rate", "primary") in rules  # 30 of 30 requests, above 10%
    down = next(a for a in alerts if a["rule"] == "deployment_down_s")
    assert "deployment dead of primary is down (breaker open)" in down["message"]
    assert "5 connection" in down["message"]
    totals = stats["totals"]
    assert (totals["errors"], totals["upstream_errors"], totals["fallbacks"]) == (0, 5, REQUESTS)
    [dead] = [d for d in stats["upstreams"]["deployments"] if d["deployment"] == "dead"]
    assert dead["breaker"] == "open" and dead["down"] and dead["errors"]["connection"] == 5
    assert [(c["deployment"], c["state"]) for c in stats["upstreams"]["transitions"]] == [("dead", "open")]
    assert "upstream failures \x1b[31m5" in screen and "fallbacks \x1b[31m30" in screen
    assert "primary / dead" in screen and "open" in screen and "deployment dead of primary is down" in screen
    lines = [r.getMessage() for r in caplog.records if r.name == "thrifty.observe"]
    breaker = [line for line in lines if "breaker" in line and not line.startswith("alert")]
    fallback = [line for line in lines if line.startswith("fallback chain")]
    assert breaker == ["deployment dead of primary: breaker open (5 consecutive failures, last: connection)"]
    assert len(fallback) == 1 and "went on to backup" in fallback[0]
    assert any(line.startswith("alert: deployment dead of primary is down") for line in lines)


# -- the parts, with a fake clock ----------------------------------------------------------------


class Source:
    """A group's counts and changes, set by hand."""

    def __init__(self) -> None:
        self.counts = GroupCounts("g", 0, 0, 0, (DeploymentCounts("d", True, "closed", 0, 0, {}),))
        self.changes: list[Change] = []

    def upstream_counts(self) -> GroupCounts:
        return self.counts

    def upstream_changes(self) -> list[Change]:
        out, self.changes = self.changes, []
        return out


def test_many_breaker_changes_make_one_log_line_per_state_and_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="thrifty.observe")
    source = Source()
    ups = Upstreams(300, log_every_s=60)
    ups.add(source)
    now = 1000.0
    for _ in range(20):  # a dead deployment's breaker: open, half-open probe, open again, ...
        source.changes += [
            Change("g", "d", "breaker", "open", "5 consecutive failures"),
            Change("g", "d", "breaker", "half_open"),
        ]
        ups.tick(now)
        now += 2
    source.changes.append(Change("g", "d", "breaker", "closed", "a request succeeded"))
    ups.tick(now)
    now = 1000.0 + 61
    source.changes.append(Change("g", "d", "breaker", "open", "5 consecutive failures"))
    ups.tick(now)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "deployment d of g: breaker open (5 consecutive failures)",
        "deployment d of g: breaker closed (a request succeeded)",
        "deployment d of g: breaker open (5 consecutive failures) (19 more such changes in the last 60 s)",
    ]


def test_fallbacks_are_logged_once_a_minute_with_their_count(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="thrifty.observe")
    ups = Upstreams(300, log_every_s=60)
    for t in range(100):
        ups.on_fallback(FallbackTaken("local", "cloud", "NoDeploymentAvailable"))
        ups.tick(1000.0 + t * 0.5)
    ups.tick(1061.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "fallback chain local: 1 requests went on to cloud (1 since start; NoDeploymentAvailable 1)",
        "fallback chain local: 99 requests went on to cloud (100 since start; NoDeploymentAvailable 100)",
    ]


def test_error_rate_is_over_the_window_only() -> None:
    source = Source()
    ups = Upstreams(60, sample_s=1)
    ups.add(source)
    for t, (sent, failed) in enumerate([(0, 0), (100, 0), (200, 50)]):
        source.counts = GroupCounts(
            "g", 0, 0, 0, (DeploymentCounts("d", True, "closed", 0, sent, {"5xx": failed}),)
        )
        ups.tick(1000.0 + t * 40)
    [row] = ups.figures(1080.0)
    assert (row["window_attempts"], row["window_errors"]) == (100, 50) and row["error_rate"] == 0.5


def test_health_changes_reach_the_group_as_changes() -> None:
    member = Member(
        Deployment(name="d", provider="fake", model="m"), FakeBackend("hi"), BreakerSettings(), FakeClock()
    )
    member.set_healthy(False, "GET /health: answered 502")
    member.set_healthy(False, "GET /health: answered 502")  # no change, nothing noted
    member.set_healthy(True)
    assert [(c.what, c.state) for c in member.changes] == [("health", "unhealthy"), ("health", "healthy")]


def test_errors_are_classed_by_type() -> None:
    assert error_class(UpstreamTimeout("slow")) == "timeout"
    assert error_class(UpstreamConnectionError("refused")) == "connection"
    assert error_class(UpstreamStatusError("x", upstream_status=503)) == "5xx"
    assert error_class(UpstreamStatusError("x", upstream_status=401)) == "4xx"
    assert error_class(RateLimited("slow down")) == "4xx"
    assert error_class(ValueError("ours")) == "other"


# -- alert defaults on a stock setup ---------------------------------------------------------------


QUIET = Health(latency={}, cache_hit_rate=None, cache_lookups=0, fast_tier_share=None, routed=0, requests=0)


def test_stock_startup_and_memory_with_the_embedded_model_raise_no_alert(tmp_path: Path) -> None:
    """The issue's figures: 790 ms to ready (the model took 450), 290 MB resident with a 98 MB model."""
    settings = parse_alerts(make_config(tmp_path))
    needs = Needs(model_bytes=98_000_000, load_s=0.45)
    stock = evaluate(settings, QUIET, startup_s=0.79, rss=290e6, parallel_share=None, needs=needs)
    assert stock == []
    heavy = evaluate(settings, QUIET, startup_s=2.0, rss=420e6, parallel_share=None, needs=needs)
    assert [a.message for a in heavy] == [
        "startup time is 2e+03 ms, above the limit of 500 ms + 450 ms for loading models",
        "resident memory is 420 MB, above the limit of 200 MB + 98 MB for model files",
    ]


def test_a_deployment_down_alerts_at_once_by_default() -> None:
    row = {
        "group": "g",
        "deployment": "d",
        "healthy": False,
        "breaker": "open",
        "down_s": 0.0,
        "errors": {"5xx": 7},
        "error_rate": None,
        "window_attempts": 0,
    }
    settings = parse_alerts(make_config(Path(".")))
    [alert] = evaluate(settings, QUIET, startup_s=None, rss=0, parallel_share=None, deployments=[row])
    assert alert.message == (
        "deployment d of g is down (failing its health check and breaker open) for 0 s; errors since start: 7 5xx"
    )
    quiet = AlertSettings()  # no rules: nothing fires
    assert evaluate(quiet, QUIET, startup_s=None, rss=0, parallel_share=None, deployments=[row]) == []
