"""Latency health: rolling percentiles per model group, and the alert rules over them."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any

from .settings import AlertSettings, Rule
from .tally import Sample, percentile


@dataclass(frozen=True)
class Alert:
    rule: str
    value: float
    threshold: float
    message: str
    subject: str = ""  # the model group for per-model rules

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "value": self.value,
            "threshold": self.threshold,
            "message": self.message,
            "subject": self.subject,
        }


LABELS = {
    "startup_ms": "startup time",
    "p95_latency_s": "p95 latency",
    "cache_hit_rate": "cache hit rate",
    "parallel_tool_calls": "share of tool calls run in parallel",
    "fast_tier_share": "fast-tier share",
    "memory_mb": "resident memory",
}


def rss_bytes() -> float:
    """The process's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            pages = int(f.read().split()[1])
        return float(pages * os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, IndexError):
        return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


@dataclass(frozen=True)
class Health:
    """Figures over the rolling window."""

    latency: dict[str, dict[str, float | int | None]]  # model -> p50/p95/p99/requests
    cache_hit_rate: float | None
    cache_lookups: int
    fast_tier_share: float | None
    routed: int
    requests: int


def window_health(samples: list[Sample], settings: AlertSettings) -> Health:
    by_model: dict[str, list[float]] = {}
    hits = lookups = fast = routed = 0
    for s in samples:
        by_model.setdefault(s.group, []).append(s.latency_s)
        if s.cache:
            lookups += 1
            hits += s.cache == "hit"
        if s.tier:
            routed += 1
            fast += s.tier in settings.fast_tiers
    latency: dict[str, dict[str, float | int | None]] = {}
    for model, values in sorted(by_model.items()):
        values.sort()
        latency[model] = {
            "requests": len(values),
            "p50": percentile(values, 0.50),
            "p95": percentile(values, 0.95),
            "p99": percentile(values, 0.99),
        }
    return Health(
        latency=latency,
        cache_hit_rate=hits / lookups if lookups else None,
        cache_lookups=lookups,
        fast_tier_share=fast / routed if routed else None,
        routed=routed,
        requests=len(samples),
    )


def _fires(rule: Rule, value: float) -> bool:
    return value > rule.threshold if rule.upper else value < rule.threshold


def _fmt(rule: Rule, value: float) -> str:
    if rule.unit:
        return f"{value:.3g} {rule.unit}"
    return f"{value:.0%}"


def evaluate(
    settings: AlertSettings,
    health: Health,
    *,
    startup_s: float | None,
    rss: float,
    parallel_share: float | None,
) -> list[Alert]:
    """The alerts that fire now."""
    checks: list[tuple[str, float | None, str, int]] = [
        ("startup_ms", None if startup_s is None else startup_s * 1000, "", settings.min_requests),
        ("memory_mb", rss / 1e6, "", settings.min_requests),
        ("cache_hit_rate", health.cache_hit_rate, "", health.cache_lookups),
        ("fast_tier_share", health.fast_tier_share, "", health.routed),
        ("parallel_tool_calls", parallel_share, "", settings.min_requests),
    ]
    for model, figures in health.latency.items():
        p95 = figures["p95"]
        checks.append(
            ("p95_latency_s", None if p95 is None else float(p95), model, int(figures["requests"] or 0))
        )
    alerts = []
    for name, value, subject, samples in checks:
        rule = settings.rule(name)
        if rule is None or value is None or samples < settings.min_requests or not _fires(rule, value):
            continue
        side = "above" if rule.upper else "below"
        label = LABELS[name] + (f" of {subject}" if subject else "")
        message = f"{label} is {_fmt(rule, value)}, {side} the limit of {_fmt(rule, rule.threshold)}"
        alerts.append(Alert(name, value, rule.threshold, message, subject))
    return alerts


def process_age() -> float | None:
    """Seconds since this process started (Linux), or None where unknown."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
