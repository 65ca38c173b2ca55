"""The scaling policy and the seasonal baseline, driven by a fake clock: no sleeps, no processes."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from thrifty.balance.scaling import Decision, ScalingPolicy, ScalingSettings, Signals, parse_scaling
from thrifty.balance.seasonal import HOUR, SeasonalBaseline
from thrifty.config import Where
from thrifty.errors import ConfigError


@dataclass
class Group:
    """A group as the policy sees it: replicas appear ``warm_s`` after asked for, go at once."""

    policy: ScalingPolicy
    t: float = 0.0
    ready: int = 0
    warming: list[float] = field(default_factory=list)  # when each warming replica is ready
    log: list[Decision] = field(default_factory=list)
    warm_s: float = 3.0

    def tick(
        self, load: int, queued: int = 0, p95: float | None = None, forecast: float | None = None
    ) -> Decision:
        self.ready += sum(1 for at in self.warming if at <= self.t)
        self.warming = [at for at in self.warming if at > self.t]
        signals = Signals(self.t, self.ready, len(self.warming), load, queued, p95, forecast)
        decision = self.policy.decide(signals)
        if decision.target > decision.current:
            self.warming += [self.t + self.warm_s] * decision.change
        elif decision.target < decision.current:
            self.ready -= decision.current - decision.target
        if decision.change:
            self.log.append(decision)
        self.t += 1.0
        return decision

    @property
    def replicas(self) -> int:
        return self.ready + len(self.warming)


def group(**settings: object) -> Group:
    g = Group(ScalingPolicy(ScalingSettings(**settings)))  # type: ignore[arg-type]
    g.ready = ScalingSettings(**settings).min_replicas  # type: ignore[arg-type]
    return g


def test_step_load_scales_up_to_what_the_load_needs_and_no_further() -> None:
    g = group(min_replicas=1, max_replicas=8, target_in_flight=2, window_s=1)
    for _ in range(5):
        g.tick(load=1)
    assert g.replicas == 1 and not g.log
    g.tick(load=9)  # a step: 9 in flight need ceil(9 / 2) = 5 replicas
    assert g.replicas == 5 and g.log[-1].rule == "demand" and "need 5" in g.log[-1].reason
    for _ in range(30):
        g.tick(load=9)
    assert g.replicas == 5 and len(g.log) == 1


def test_burst_is_capped_at_max_replicas() -> None:
    g = group(min_replicas=1, max_replicas=3, target_in_flight=1, window_s=1)
    g.tick(load=50, queued=40)
    assert g.replicas == 3 and g.log[-1].to_json()["to"] == 3


def test_queue_adds_one_replica_at_a_time_only_when_none_is_warming() -> None:
    g = group(min_replicas=1, max_replicas=4, target_in_flight=100, window_s=1)
    g.tick(load=1, queued=3)
    assert g.replicas == 2 and g.log[-1].rule == "queue"
    g.tick(load=1, queued=3)  # the new one still warms: wait for it
    assert g.replicas == 2
    g.t += g.warm_s
    g.tick(load=1, queued=3)
    assert g.replicas == 3


def test_latency_rule_adds_a_replica_when_p95_is_high() -> None:
    g = group(min_replicas=1, max_replicas=2, target_in_flight=100, scale_up_p95_s=1.0)
    g.tick(load=1, p95=0.5)
    assert g.replicas == 1
    g.tick(load=1, p95=2.5)
    assert g.replicas == 2 and g.log[-1].rule == "latency" and "p95 2.50s" in g.log[-1].reason


def test_quiet_period_removes_one_replica_at_a_time() -> None:
    g = group(min_replicas=1, max_replicas=4, target_in_flight=2, window_s=1, quiet_s=10)
    g.tick(load=8)
    g.t += g.warm_s
    for _ in range(5):
        g.tick(load=8)
    assert g.replicas == 4
    for _ in range(60):
        g.tick(load=0)
    quiet = [d for d in g.log if d.rule == "quiet"]
    assert [d.target for d in quiet] == [3, 2, 1]
    assert [round(b.at - a.at) for a, b in zip(quiet, quiet[1:], strict=False)] == [10, 10]
    assert g.replicas == 1


def test_a_busy_moment_restarts_the_quiet_period() -> None:
    g = group(min_replicas=1, max_replicas=2, target_in_flight=2, window_s=1, quiet_s=10)
    g.ready = 2
    for _ in range(8):
        g.tick(load=0)
    g.tick(load=4)  # busy again: the count stays and the quiet clock resets
    for _ in range(8):
        g.tick(load=0)
    assert g.replicas == 2
    for _ in range(3):
        g.tick(load=0)
    assert g.replicas == 1


def test_scale_to_zero_after_idle_and_back_on_the_next_request() -> None:
    g = group(
        min_replicas=0, max_replicas=2, target_in_flight=2, window_s=1, idle_to_zero_s=30, cold_start_s=7
    )
    g.ready = 1
    g.tick(load=1)
    for _ in range(29):
        g.tick(load=0)
    assert g.replicas == 1
    g.tick(load=0)
    assert g.replicas == 0 and g.log[-1].rule == "idle"
    for _ in range(100):
        g.tick(load=0)
    assert g.replicas == 0 and len(g.log) == 1
    g.tick(load=0, queued=1)  # a request waits
    assert g.replicas == 1 and g.log[-1].rule == "cold_start" and "cold start ~7s" in g.log[-1].reason


def test_min_replicas_is_a_floor() -> None:
    g = group(min_replicas=2, max_replicas=3, quiet_s=1, idle_to_zero_s=1)
    for _ in range(50):
        g.tick(load=0)
    assert g.replicas == 2 and not g.log


def test_forecast_scales_up_ahead_of_a_seasonal_ramp() -> None:
    """A baseline that has seen the 9 o'clock ramp on past days starts replicas before it comes."""
    day = 24 * HOUR
    rows = []
    for d in range(14):  # two weeks: 1 in flight at night, 8 from 09:00 to 17:00
        for h in range(24):
            in_flight = 8 if 9 <= h < 17 else 1
            rows.append((d * day + h * HOUR + 1800, in_flight * HOUR))
    baseline = SeasonalBaseline().fit(rows)
    assert baseline.expected(15 * day + 10 * HOUR) == pytest.approx(8)
    assert baseline.expected(15 * day + 3 * HOUR) == pytest.approx(1)
    settings = {"min_replicas": 1, "max_replicas": 6, "target_in_flight": 2, "window_s": 1, "lead_s": 900}
    reactive, predictive = group(**settings), group(**settings, predictive=True)
    start = 15 * day + 8 * HOUR  # 08:00: load comes at 09:00
    for g in (reactive, predictive):
        g.t = start
    ahead = None
    for step in range(3600 + 60):
        load = 8 if step >= 3600 else 1
        now = start + step
        reactive.tick(load)
        decision = predictive.tick(load, forecast=baseline.forecast(now, 900))
        if ahead is None and decision.rule == "forecast":
            ahead = 3600 - step
    assert ahead is not None and 0 < ahead <= 900  # started within the lead time before 09:00
    assert predictive.replicas == math.ceil(8 / 2)
    # the reactive group only reacts at 09:00; the predictive one is ready when it comes
    first_reactive = next(d for d in reactive.log if d.rule == "demand")
    assert first_reactive.at == start + 3600


def test_baseline_is_per_hour_of_the_week() -> None:
    baseline = SeasonalBaseline()
    monday_9 = 4 * 24 * HOUR + 9 * HOUR  # 1970-01-05 was a Monday
    assert baseline.bucket(monday_9) == 9
    assert baseline.bucket(monday_9 + 7 * 24 * HOUR) == 9
    assert baseline.bucket(monday_9 + 24 * HOUR) == 33
    assert baseline.forecast(monday_9, 600) is None
    fitted = baseline.fit([(monday_9 + 60, 360.0)])
    assert fitted.expected(monday_9 + 7 * 24 * HOUR) == pytest.approx(0.1)
    assert fitted.status()["rows"] == 1


def test_parse_scaling_names_the_bad_key() -> None:
    where = Where("c.yaml", "models[name=local].autoscale")
    settings = parse_scaling({"min_replicas": 0, "max_replicas": 4, "predictive": True}, where)
    assert (settings.min_replicas, settings.max_replicas, settings.predictive) == (0, 4, True)
    with pytest.raises(ConfigError, match=r"autoscale.max_replicas: must be at least min_replicas \(3\)"):
        parse_scaling({"min_replicas": 3, "max_replicas": 2}, where)
    with pytest.raises(ConfigError, match=r"autoscale.max: unknown setting"):
        parse_scaling({"max": 2}, where)
    with pytest.raises(ConfigError, match=r"autoscale.quiet_s"):
        parse_scaling({"quiet_s": -1}, where)


def test_a_falling_forecast_shortens_the_quiet_period() -> None:
    settings = {"min_replicas": 1, "max_replicas": 6, "target_in_flight": 2, "window_s": 1, "quiet_s": 40}
    reactive, predictive = group(**settings), group(**settings, predictive=True, forecast_quiet=0.25)
    for g in (reactive, predictive):
        g.ready = 4
    for _ in range(41):
        reactive.tick(load=0)
        predictive.tick(load=0, forecast=1.0)  # the season says one replica is enough from now on
    first = {
        name: next(d.at for d in g.log if d.rule == "quiet")
        for name, g in (("r", reactive), ("p", predictive))
    }
    assert first == {"r": 40.0, "p": 10.0}
    # a forecast only one replica below the count is not enough to hurry
    near = group(**settings, predictive=True)
    near.ready = 2
    for _ in range(20):
        near.tick(load=0, forecast=1.0)
    assert near.replicas == 2
