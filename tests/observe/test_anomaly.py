"""Anomalies on a generated series: quiet on normal days, one alert per planted spike."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from thrifty.observe import Observer
from thrifty.observe.anomaly import Anomalies
from thrifty.observe.settings import AnomalySettings

from .helpers import event, make_config

MINUTE = 60.0
DAY = 24 * 60  # minutes


def normal_minute(rng: random.Random, minute: int) -> int:
    """A daily shape: quiet nights, busy afternoons, Poisson-like noise around it."""
    hour = (minute % DAY) / 60
    mean = 8 + 22 * max(0.0, 1 - abs(hour - 15) / 9)
    return max(0, round(rng.gauss(mean, mean**0.5)))


def run(spikes: dict[int, tuple[str, float]], days: int = 7) -> list[tuple[int, str, str]]:
    """Feed ``days`` (a week) of traffic for key k1 on model m (and a steady key k2); the alerts seen, by minute."""
    rng = random.Random(7)
    detector = Anomalies(AnomalySettings())
    seen: list[tuple[int, str, str]] = []
    for minute in range(days * DAY):
        start = minute * MINUTE
        n = normal_minute(rng, minute)
        cost, errors = 0.0004, 0
        figure, factor = spikes.get(minute, ("", 1.0))
        if figure == "requests":
            n += round(factor)
        elif figure == "cost_usd":
            cost *= factor
        elif figure == "errors":
            errors = round(n * factor)
        for i in range(n):
            detector.add(start + i * MINUTE / (n + 1), "k1", "m", cost, i < errors)
        for i in range(5):
            detector.add(start + i * 10, "k2", "m", 0.0, False)
        found = detector.check(start + MINUTE)  # the minute just closed
        seen += [(minute, a.key, a.figure) for a in found]
    return seen


def test_normal_days_raise_no_anomaly() -> None:
    assert run({}) == []


def test_each_spike_raises_one_alert_naming_key_model_and_figure() -> None:
    spikes = {
        DAY + 200: ("requests", 60),  # a night-time burst of 60 more requests
        DAY + 900: ("cost_usd", 20.0),  # the same traffic, twenty times the price
        2 * DAY + 400: ("errors", 0.8),  # 80% of requests failing
    }
    by_minute: dict[int, set[str]] = {}
    for minute, key, figure in run(spikes):
        assert key == "k1"  # the steady key k2 never shows
        by_minute.setdefault(minute, set()).add(figure)
    # one alerting minute per spike; a burst of requests is a burst of cost as well
    assert by_minute == {
        DAY + 200: {"requests", "cost_usd"},
        DAY + 900: {"cost_usd"},
        2 * DAY + 400: {"errors"},
    }


def test_the_observer_alerts_on_a_spike_with_key_model_and_figure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="thrifty.observe")
    clock = [10_000 * MINUTE]
    config = make_config(tmp_path, alerts={"startup_ms": None, "memory_mb": None})
    obs = Observer(config, clock=lambda: clock[0])
    rng = random.Random(3)
    for minute in range(40):
        base = clock[0] - clock[0] % MINUTE
        n = 200 if minute == 39 else rng.randint(8, 14)
        for i in range(n):
            obs.record(event(minute * 1000 + i, ts=base + i * 0.2, model="fast", api_key="key-7"))
        clock[0] = base + MINUTE
        alerts = obs.alerts()
        if minute < 39:
            assert [a for a in alerts if a.rule.startswith("anomaly")] == []
    spikes = {a.rule: a for a in obs.alerts() if a.rule.startswith("anomaly")}
    assert set(spikes) == {"anomaly_requests", "anomaly_cost_usd"}  # 200 requests cost 200 times as much
    spike = spikes["anomaly_requests"]
    assert spike.subject == "key-7 fast" and spike.value == 200
    assert spike.message.startswith("anomaly: key key-7 on model fast: request rate 200/min, usually ")
    obs.alerts()
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        f"alert: {spikes['anomaly_requests'].message}",
        f"alert: {spikes['anomaly_cost_usd'].message}",
    ]


def test_the_writer_logs_a_spike_nobody_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="thrifty.observe")
    clock = [10_000 * MINUTE]
    obs = Observer(make_config(tmp_path), clock=lambda: clock[0])
    for minute in range(40):
        base = clock[0] - clock[0] % MINUTE
        for i in range(300 if minute == 39 else 10):
            obs.record(event(minute * 1000 + i, ts=base + i * 0.1, model="fast", api_key="key-7"))
        clock[0] = base + MINUTE
        obs.flush()  # what the writer thread does ...
        obs.sample()  # ... every time it wakes
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2, logged  # once each, though sampled every minute
    assert logged[0].startswith("alert: anomaly: key key-7 on model fast: request rate 300/min")
    assert logged[1].startswith("alert: anomaly: key key-7 on model fast: cost rate $")
