"""Health over the rolling window (latency, errors, fallbacks per model group) and the alert rules.

Startup time has one definition everywhere: from the process's start to the
gateway being ready (every model loaded), as logged once at ready, shown on
``/metrics`` and judged by ``startup_ms``. Startup and memory are judged
against what the loaded models need: the limit is the rule's figure plus the
time loading the models took, and plus the size of their files.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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
    "deployment_down_s": "time down",
    "error_rate": "error rate",
    "fallback_rate": "fallback rate",
}


@runtime_checkable
class HoldsModel(Protocol):
    """A layer that loads model weights into the process (the embedded llama.cpp model)."""

    def footprint(self) -> tuple[int, float]:
        """(bytes of the model files loaded, seconds loading took); zeros before loading."""
        ...


@dataclass(frozen=True)
class Needs:
    """What the loaded models need, beside the gateway itself."""

    model_bytes: int = 0
    load_s: float = 0.0


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
    # model group -> (share, requests): answered 5xx, served by a fallback
    failed: dict[str, tuple[float, int]] = field(default_factory=dict)
    fallbacks: dict[str, tuple[float, int]] = field(default_factory=dict)


def window_health(samples: list[Sample], settings: AlertSettings) -> Health:
    by_model: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    fallbacks: dict[str, int] = {}
    hits = lookups = fast = routed = 0
    for s in samples:
        by_model.setdefault(s.group, []).append(s.latency_s)
        if s.failed:
            failed[s.group] = failed.get(s.group, 0) + 1
        if s.fallback:
            fallbacks[s.group] = fallbacks.get(s.group, 0) + 1
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
        failed={g: (n / len(by_model[g]), len(by_model[g])) for g, n in failed.items()},
        fallbacks={g: (n / len(by_model[g]), len(by_model[g])) for g, n in fallbacks.items()},
    )


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
    needs: Needs | None = None,
    deployments: list[dict[str, Any]] | None = None,
) -> list[Alert]:
    """The alerts that fire now.

    ``deployments`` are the rows of :meth:`Upstreams.figures`; ``needs`` raises
    the startup and memory limits by what the loaded models take.
    """
    needs = needs or Needs()
    every = settings.min_requests  # rules about the process itself need no samples
    checks: list[tuple[str, float | None, str, int]] = [
        ("startup_ms", None if startup_s is None else startup_s * 1000, "", every),
        ("memory_mb", rss / 1e6, "", every),
        ("cache_hit_rate", health.cache_hit_rate, "", health.cache_lookups),
        ("fast_tier_share", health.fast_tier_share, "", health.routed),
        ("parallel_tool_calls", parallel_share, "", every),
    ]
    for model, figures in health.latency.items():
        p95 = figures["p95"]
        checks.append(
            ("p95_latency_s", None if p95 is None else float(p95), model, int(figures["requests"] or 0))
        )
    for model, (share, n) in health.failed.items():
        checks.append(("error_rate", share, model, n))
    for model, (share, n) in health.fallbacks.items():
        checks.append(("fallback_rate", share, model, n))
    for row in deployments or ():
        name = row["deployment"]
        checks.append(("deployment_down_s", row["down_s"], name, every))
        checks.append(("error_rate", row["error_rate"], name, row["window_attempts"]))
    extra = {
        "startup_ms": (needs.load_s * 1000, "for loading models"),
        "memory_mb": (needs.model_bytes / 1e6, "for model files"),
    }
    alerts = []
    for name, value, subject, samples in checks:
        rule = settings.rule(name)
        if rule is None or value is None or samples < settings.min_requests:
            continue
        more, why = extra.get(name, (0.0, ""))
        limit = rule.threshold + more
        at_least = name == "deployment_down_s"  # down at all, with the default of 0 s
        if not (value >= limit if at_least else value > limit if rule.upper else value < limit):
            continue
        side = "above" if rule.upper else "below"
        label = LABELS[name] + (f" of {subject}" if subject else "")
        allowance = f" + {_fmt(rule, more)} {why}" if more else ""
        message = (
            f"{label} is {_fmt(rule, value)}, {side} the limit of {_fmt(rule, rule.threshold)}{allowance}"
        )
        if name == "deployment_down_s":
            message = _down_message(subject, value, deployments or [])
        alerts.append(Alert(name, value, limit, message, subject))
    return alerts


def _down_message(name: str, down_s: float, rows: list[dict[str, Any]]) -> str:
    row = next(r for r in rows if r["deployment"] == name)
    why = []
    if not row["healthy"]:
        why.append("failing its health check")
    if row["breaker"] != "closed":
        why.append(f"breaker {row['breaker'].replace('_', '-')}")
    errors = ", ".join(f"{n} {kind}" for kind, n in row["errors"].items() if n)
    return f"deployment {name} of {row['group']} is down ({' and '.join(why)}) for {down_s:.0f} s" + (
        f"; errors since start: {errors}" if errors else ""
    )


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
