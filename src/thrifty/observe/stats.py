"""The JSON the dashboard and ``thrifty top`` poll, and the Prometheus page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .health import rss_bytes, window_health
from .metrics import Counter, Gauge, Metric, expose
from .tally import BUCKET_S, Tally, percentile

if TYPE_CHECKING:
    from . import Observer


def totals(tally: Tally) -> dict[str, float]:
    tokens = tally.tokens.values
    cost = tally.cost.total()
    top = tally.cost_top.total()
    nocache = tally.cost_nocache.total()
    return {
        "requests": tally.requests.total(),
        "errors": tally.errors.total(),
        "prompt_tokens": sum(v for k, v in tokens.items() if k[2] == "prompt"),
        "completion_tokens": sum(v for k, v in tokens.items() if k[2] == "completion"),
        "cached_tokens": sum(v for k, v in tokens.items() if k[2] == "cached"),
        "saved_tokens": sum(v for k, v in tokens.items() if k[2] == "saved"),
        "cost_usd": cost,
        "cost_top_usd": top,
        "cost_nocache_usd": nocache,
        "saved_vs_top_usd": top - cost,
        "saved_vs_nocache_usd": nocache - cost,
        "unpriced": tally.unpriced.total(),
        "escalations": tally.escalations.total(),
    }


def _series(tally: Tally) -> list[dict[str, Any]]:
    out = []
    for b in tally.series:
        ordered = sorted(b.latencies)
        out.append(
            {
                "t": b.t,
                "requests": b.requests,
                "errors": b.errors,
                "cost": b.cost,
                "cost_top": b.cost_top,
                "cost_nocache": b.cost_nocache,
                "hits": b.hits,
                "lookups": b.lookups,
                "p50": percentile(ordered, 0.5),
                "p95": percentile(ordered, 0.95),
                "p99": percentile(ordered, 0.99),
            }
        )
    return out


def snapshot(obs: Observer, gauges: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """Everything the dashboard shows, as one JSON-ready mapping."""
    obs.absorb()
    gauges = obs.gauges() if gauges is None else gauges
    alerts = obs.alerts(gauges)
    speedup, share = obs.parallel(gauges)
    tally = obs.tally
    with obs._lock:
        now = obs.clock()
        health = window_health(tally.recent_samples(now), obs.alert_settings)
        cache = {"/".join(k): v for k, v in sorted(tally.cache.values.items())}
        hits = sum(v for k, v in tally.cache.values.items() if k[0] == "hit")
        lookups = tally.cache.total()
        ups = obs.upstreams.report(now)
        counted = totals(tally)
        counted["upstream_errors"] = sum(sum(d["errors"].values()) for d in ups["deployments"])
        counted["fallbacks"] = tally.fallbacks.total()
        counted["deployments_down"] = sum(1 for d in ups["deployments"] if d["down"])
        body = {
            "now": now,
            "since": obs.started_at,
            "bucket_s": BUCKET_S,
            "window_s": obs.alert_settings.window_s,
            "totals": counted,
            "cache": {
                "hits": hits,
                "lookups": lookups,
                "hit_rate": hits / lookups if lookups else None,
                "by_outcome": cache,
                "window_hit_rate": health.cache_hit_rate,
            },
            "routes": {k[0]: v for k, v in sorted(tally.routes.values.items())},
            "fast_tier_share": health.fast_tier_share,
            "latency": health.latency,
            "series": _series(tally),
            "recent": tally.recent_requests(),
            "upstreams": ups,
        }
    body.update(
        {
            "alerts": [a.to_json() for a in alerts],
            "gauges": gauges,
            "parallel": {"speedup": speedup, "share": share},
            "startup_ms": None if obs.startup_s is None else obs.startup_s * 1000,
            "memory_mb": rss_bytes() / 1e6,
            "models_mb": obs.needs().model_bytes / 1e6,
            "ledger": {
                "path": obs.ledger_settings.path,
                "rows_written": obs.ledger.written if obs.ledger else 0,
            },
        }
    )
    return body


def prometheus(obs: Observer, gauges: dict[str, dict[str, float]] | None = None) -> str:
    """The /metrics page: request counters plus gauges read now."""
    obs.absorb()
    gauges = obs.gauges() if gauges is None else gauges
    alerts = obs.alerts(gauges)
    extra: list[Metric] = []
    component = Gauge("thrifty_component", "Live state reported by gateway layers", ("source", "key"))
    for source, values in gauges.items():
        for key, value in values.items():
            component.set((source, key), value)
    active = Gauge("thrifty_alert_active", "Alert rules firing now", ("rule", "subject"))
    for alert in alerts:
        active.set((alert.rule, alert.subject), 1.0)
    window = Gauge("thrifty_window_latency_seconds", "Rolling latency percentiles", ("model", "quantile"))
    feedback = Counter("thrifty_feedback", "Feedback ratings received", ("rating",))
    with obs._lock:
        health = window_health(obs.tally.recent_samples(obs.clock()), obs.alert_settings)
        body = expose([*obs.tally.metrics(), *obs.upstreams.metrics()])
        for rating, n in obs.feedback_ratings.items():
            feedback.inc((str(rating),), n)
    for model, figures in health.latency.items():
        for q in ("p50", "p95", "p99"):
            quantile = figures[q]
            if quantile is not None:
                window.set((model, "0." + q[1:]), float(quantile))
    queued = float(len(obs._pending) + len(obs._unwritten))
    written = float(obs.ledger.written if obs.ledger else 0)
    extra.extend([component, active, window, feedback])
    extra.append(_single("thrifty_resident_memory_bytes", "Resident memory of the process", rss_bytes()))
    if obs.startup_s is not None:
        extra.append(_single("thrifty_startup_seconds", "Time from process start to ready", obs.startup_s))
    extra.append(_single("thrifty_ledger_rows_written", "Ledger rows written since start", written))
    extra.append(_single("thrifty_ledger_queue_rows", "Ledger rows waiting to be written", queued))
    extra.append(
        _single(
            "thrifty_ledger_rows_dropped",
            "Ledger rows lost because the ledger was down too long",
            float(obs.rows_dropped),
        )
    )
    return body.rstrip("\n") + "\n" + expose(extra)


def _single(name: str, help: str, value: float) -> Gauge:
    gauge = Gauge(name, help)
    gauge.set((), value)
    return gauge
