"""The observer's config sections, ``ledger:`` and ``alerts:``, parsed and checked.

Example::

    ledger:
      path: .thrifty/ledger.db   # default: <server.data_dir>/ledger.db
      flush_ms: 50               # the writer commits at least this often
      batch_rows: 500            # ... or as soon as this many rows wait
      log_prompts: false         # true: keep the text the router reads, per request (route fit --ledger)
    alerts:
      window_s: 300              # rolling window for percentiles and rates
      min_requests: 20           # rate rules wait for this many samples
      startup_ms: 500            # alert above, besides the time loading models took; null: off
      p95_latency_s: 2.0         # per model group
      deployment_down_s: 0       # a deployment unhealthy or its breaker open for longer
      error_rate: 0.10           # failed upstream attempts per deployment, 5xx answers per group
      fallback_rate: 0.10        # share of a group's requests a fallback chain served
      cache_hit_rate: 0.30       # alert below
      parallel_tool_calls: 0.50  # alert below (from the "agent" gauge source)
      fast_tier_share: 0.30      # alert below
      memory_mb: 200             # resident memory above what the loaded model files take
      fast_tiers: [fast]         # route tiers counted as "fast"
      log_every_s: 60            # one log line per breaker/health state or fallback hop this often
      anomaly_k: 6               # a key's figure above median + k * spread of its baseline; null: off
      anomaly_bucket_s: 60       # anomalies compare buckets of this length ...
      anomaly_baseline: 60       # ... with this many previous buckets
    telemetry:
      spans: true                # OpenTelemetry spans, when opentelemetry is installed
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, Where, read_bool, read_positive, read_positive_int, reject_unknown


@dataclass(frozen=True)
class LedgerSettings:
    path: str
    flush_s: float = 0.05
    batch_rows: int = 500
    log_prompts: bool = False  # the prompt log: the routed text of each request, in the ledger file


@dataclass(frozen=True)
class Rule:
    """One alert: fires when ``value`` is above (``upper``) or below the threshold."""

    name: str
    threshold: float
    upper: bool
    unit: str = ""


@dataclass(frozen=True)
class AnomalySettings:
    """Spikes of a key's requests, cost or errors against its own baseline (``anomaly.py``)."""

    k: float = 6.0
    bucket_s: float = 60.0
    baseline: int = 60  # buckets compared with
    min_baseline: int = 10  # buckets seen before a series is judged
    # a figure below its minimum is never a spike; the spread is never below its floor
    minimum: dict[str, float] = field(
        default_factory=lambda: {"requests": 10.0, "cost_usd": 0.01, "errors": 5.0}
    )
    floor: dict[str, float] = field(
        default_factory=lambda: {"requests": 1.0, "cost_usd": 0.001, "errors": 1.0}
    )


@dataclass(frozen=True)
class AlertSettings:
    window_s: float = 300.0
    min_requests: int = 20
    rules: tuple[Rule, ...] = ()
    fast_tiers: tuple[str, ...] = ("fast",)
    log_every_s: float = 60.0
    anomaly: AnomalySettings | None = field(default_factory=AnomalySettings)

    def rule(self, name: str) -> Rule | None:
        for rule in self.rules:
            if rule.name == name:
                return rule
        return None


# rule name -> (default threshold, fires when above?, unit)
DEFAULT_RULES: dict[str, tuple[float, bool, str]] = {
    "startup_ms": (500.0, True, "ms"),
    "p95_latency_s": (2.0, True, "s"),
    "cache_hit_rate": (0.30, False, ""),
    "parallel_tool_calls": (0.50, False, ""),
    "fast_tier_share": (0.30, False, ""),
    "memory_mb": (200.0, True, "MB"),
    "deployment_down_s": (0.0, True, "s"),
    "error_rate": (0.10, True, ""),
    "fallback_rate": (0.10, True, ""),
}
_RATE_RULES = {"cache_hit_rate", "parallel_tool_calls", "fast_tier_share", "error_rate", "fallback_rate"}
_ANOMALY = {"anomaly_k", "anomaly_bucket_s", "anomaly_baseline"}


def _section(config: Config, name: str) -> dict[str, Any]:
    raw = config.sections.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise config.where(name).error("must be a mapping")
    return raw


def parse_ledger(config: Config) -> LedgerSettings:
    where = config.where("ledger")
    raw = _section(config, "ledger")
    reject_unknown(raw, {"path", "flush_ms", "batch_rows", "log_prompts"}, where)
    path = raw.get("path")
    if path is None:
        path = str(Path(config.server.data_dir) / "ledger.db")
    elif not isinstance(path, str) or not path:
        raise (where / "path").error(f"must be a non-empty string, got {path!r}")
    return LedgerSettings(
        path=path,
        flush_s=read_positive(raw, "flush_ms", where, 50) / 1000,
        batch_rows=read_positive_int(raw, "batch_rows", where, 500),
        log_prompts=read_bool(raw, "log_prompts", where, False),
    )


def parse_alerts(config: Config) -> AlertSettings:
    where = config.where("alerts")
    raw = _section(config, "alerts")
    known = {"window_s", "min_requests", "fast_tiers", "log_every_s", *DEFAULT_RULES, *_ANOMALY}
    reject_unknown(raw, known, where)
    rules = []
    for name, (default, upper, unit) in DEFAULT_RULES.items():
        value = raw.get(name, default)
        if value is None or value is False:
            continue  # rule turned off
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise (where / name).error(f"must be a non-negative number or null (off), got {value!r}")
        if name in _RATE_RULES and value > 1:
            raise (where / name).error(f"is a share from 0 to 1, got {value!r}")
        rules.append(Rule(name, float(value), upper, unit))
    tiers = raw.get("fast_tiers", ["fast"])
    if isinstance(tiers, str):
        tiers = [tiers]
    if not isinstance(tiers, list) or not all(isinstance(t, str) and t for t in tiers):
        raise (where / "fast_tiers").error("must be a list of tier names")
    return AlertSettings(
        window_s=read_positive(raw, "window_s", where, 300),
        min_requests=read_positive_int(raw, "min_requests", where, 20),
        rules=tuple(rules),
        fast_tiers=tuple(tiers),
        log_every_s=read_positive(raw, "log_every_s", where, 60),
        anomaly=_anomaly(raw, where),
    )


def _anomaly(raw: dict[str, Any], where: Where) -> AnomalySettings | None:
    if "anomaly_k" in raw and raw["anomaly_k"] in (None, False):
        return None
    return AnomalySettings(
        k=read_positive(raw, "anomaly_k", where, 6),
        bucket_s=read_positive(raw, "anomaly_bucket_s", where, 60),
        baseline=read_positive_int(raw, "anomaly_baseline", where, 60),
    )


def parse_telemetry(config: Config) -> bool:
    """Whether to emit OpenTelemetry spans (when the package is installed)."""
    where = config.where("telemetry")
    raw = _section(config, "telemetry")
    reject_unknown(raw, {"spans"}, where)
    spans = read_bool(raw, "spans", where, True)
    return spans
