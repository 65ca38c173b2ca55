"""In-memory aggregates of recorded requests: metrics, rolling window, time series.

The observer's writer thread (or a reader, whichever comes first) feeds each
recorded event through :meth:`Tally.add`, which prices it, counts it and
returns its ledger row. Not thread-safe by itself: the observer holds a lock.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..prices import PriceTable
from ..types import UpstreamCall
from .events import RequestEvent
from .metrics import OVERHEAD_BUCKETS, Counter, Histogram, Metric
from .spans import Spans


def _json_dumps() -> Callable[[dict[str, str]], str]:
    try:
        import orjson  # a thrifty dependency; several times faster than json
    except ImportError:  # pragma: no cover
        return json.dumps
    return lambda value: orjson.dumps(value).decode()


_dumps = _json_dumps()

COLUMNS = (
    "request_id",
    "ts",
    "model",
    "deployment",
    "tier",
    "route",
    "cache",
    "stream",
    "status",
    "error_type",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "latency_s",
    "ttft_s",
    "overhead_s",
    "attempts",
    "api_key",
    "tenant",
    "cost_usd",
    "cost_top_usd",
    "cost_nocache_usd",
    "priced",
    "annotations",
    "team",
    "end_user",
    "tokens_saved",
    "cache_key",
    "purpose",  # "" for the answer sent; "verify" or "escalated" for a call made besides it
    "parent_id",  # such a call's request id ("" for an answer)
    "verdict",  # a cascade verifier's verdict on this answer: 1 accepted, 0 rejected, NULL none
)
Row = tuple[Any, ...]

BUCKET_S = 10.0
SERIES_LEN = 180  # 30 minutes of 10 s buckets
RESERVOIR = 256
RECENT = 50


@dataclass(slots=True)
class Sample:
    """What the rolling window keeps of one request."""

    ts: float
    group: str  # the model group that served it (else the model asked for)
    latency_s: float
    cache: str  # "hit", "miss" or ""
    tier: str
    error: bool  # answered with a status of 400 or more
    failed: bool = False  # answered 500 or more: thrifty or every upstream failed it
    fallback: bool = False  # a fallback chain served it


@dataclass(slots=True)
class Bucket:
    t: float
    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    cost_top: float = 0.0
    cost_nocache: float = 0.0
    hits: int = 0
    lookups: int = 0
    latencies: list[float] = field(default_factory=list)

    def add_latency(self, value: float) -> None:
        if len(self.latencies) < RESERVOIR:
            self.latencies.append(value)
        else:  # reservoir sampling keeps a fair sample of a busy bucket
            slot = int(random.random() * self.requests)
            if slot < RESERVOIR:
                self.latencies[slot] = value


def percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class Tally:
    def __init__(self, prices: PriceTable, window_s: float, spans: Spans | None = None) -> None:
        self.prices = prices
        self.spans = spans
        self.window_s = window_s
        self.requests = Counter("thrifty_requests", "Requests answered", ("model", "deployment", "status"))
        self.errors = Counter("thrifty_errors", "Requests that ended in an error, by error type", ("type",))
        self.latency = Histogram("thrifty_request_latency_seconds", "Total request latency", ("model",))
        self.ttft = Histogram(
            "thrifty_time_to_first_token_seconds", "Time to first token (streams)", ("model",)
        )
        self.overhead = Histogram(
            "thrifty_overhead_seconds",
            "Time spent in thrifty itself, upstream excluded",
            (),
            OVERHEAD_BUCKETS,
        )
        self.tokens = Counter(
            "thrifty_tokens",
            "Tokens by kind (prompt, completion, cached; saved: taken out of prompts by the compressor)",
            ("model", "deployment", "kind"),
        )
        self.cost = Counter("thrifty_cost_usd", "Cost in US dollars", ("model", "deployment"))
        self.cost_top = Counter(
            "thrifty_cost_baseline_top_usd", "Cost had every request gone to the priciest deployment"
        )
        self.cost_nocache = Counter("thrifty_cost_baseline_nocache_usd", "Cost had no cache answered")
        self.unpriced = Counter(
            "thrifty_unpriced_requests", "Requests whose model has no known price", ("deployment",)
        )
        self.cache = Counter(
            "thrifty_cache_requests", "Cache lookups by result and level", ("result", "level")
        )
        self.routes = Counter("thrifty_route_decisions", "Routing decisions by tier", ("tier",))
        self.escalations = Counter("thrifty_escalations", "Cascade escalations")
        self.fallbacks = Counter("thrifty_fallbacks", "Requests served by a fallback")
        self.window: deque[Sample] = deque(maxlen=20_000)
        self.series: deque[Bucket] = deque(maxlen=SERIES_LEN)
        self.recent: deque[tuple[RequestEvent, str, float]] = deque(maxlen=RECENT)

    def metrics(self) -> list[Metric]:
        return [
            self.requests,
            self.errors,
            self.latency,
            self.ttft,
            self.overhead,
            self.tokens,
            self.cost,
            self.cost_top,
            self.cost_nocache,
            self.unpriced,
            self.cache,
            self.routes,
            self.escalations,
            self.fallbacks,
        ]

    def add(self, ev: RequestEvent) -> Row:
        """Count one event; return its ledger row."""
        ann = ev.annotations
        outcome, route = ev.cache, ev.route
        cache, level = (outcome.result, outcome.level) if outcome is not None else ("", "")
        tier, escalations = (route.tier, route.escalations) if route is not None else ("", 0)
        rates = self.prices.rates(ev.deployment, tier, ev.model)
        nocache = rates.full_cost(ev.prompt_tokens, ev.completion_tokens)
        cost = (
            0.0
            if cache == "hit"
            else rates.cost(
                ev.prompt_tokens,
                ev.completion_tokens,
                ev.cached_tokens,
                ev.cache_write_tokens,
                ev.reasoning_tokens,
            )
        )
        top = self.prices.top().full_cost(ev.prompt_tokens, ev.completion_tokens)
        ok = ev.status < 400
        saved = ev.compress.saved if ev.compress is not None else 0
        if saved:
            self.tokens.inc((ev.model, ev.deployment, "saved"), saved)
        self._count(ev, cost, top, nocache, rates.priced)
        if cache:
            self.cache.inc((cache, level))
        if tier:
            self.routes.inc((tier,))
        if escalations:
            self.escalations.inc((), escalations)
        if ev.fallback is not None:
            self.fallbacks.inc()
        # percentiles per model group: the group that served a routed request, else the one asked for
        group = tier if tier in self.prices.groups else ev.model
        fallback = ev.fallback is not None
        self.window.append(
            Sample(ev.ts, group, ev.latency_s, cache, tier, not ok, ev.status >= 500, fallback)
        )
        self._bucket(ev, cost, top, nocache, cache)
        self.recent.append((ev, tier, cost))
        if self.spans is not None:
            self.spans.emit(ev, cost, tier, cache)
        return (
            ev.request_id,
            ev.ts,
            ev.model,
            ev.deployment,
            tier,
            ann.get("route", ""),
            ann.get("cache", ""),
            int(ev.stream),
            ev.status,
            ev.error_type,
            ev.prompt_tokens,
            ev.completion_tokens,
            ev.cached_tokens,
            ev.latency_s,
            ev.ttft_s,
            ev.overhead_s,
            ev.attempts,
            ev.api_key,
            ev.tenant,
            cost,
            top,
            nocache,
            int(rates.priced),
            _dumps(ann) if ann else "",
            ev.team,
            ev.user,
            saved,
            outcome.key if outcome is not None else "",
            "",
            "",
            _verdict(route.verdicts.get(route.tier)) if route is not None else None,
        )

    def add_calls(self, ev: RequestEvent) -> list[Row]:
        """Count the upstream calls made besides the answer (``ev.calls``); their ledger rows.

        Their tokens and cost count like an answer's; they are not requests
        (no request, latency or error counts). Had every request gone to the
        top deployment, none of them would have been made (their top cost is 0).
        """
        rows = []
        for call in ev.calls:
            usage = call.usage
            rates = self.prices.rates(call.deployment, call.model)
            full = rates.full_cost(usage.prompt_tokens, usage.completion_tokens)
            cost = 0.0 if call.cache_hit else rates.usage_cost(usage)
            for kind, n in (
                ("prompt", usage.prompt_tokens),
                ("completion", usage.completion_tokens),
                ("cached", usage.cached_tokens),
            ):
                if n:
                    self.tokens.inc((ev.model, call.deployment, kind), n)
            self.cost.inc((ev.model, call.deployment), cost)
            self.cost_nocache.inc((), full)
            if not rates.priced:
                self.unpriced.inc((call.deployment,))
            bucket = self._bucket_of(ev.ts)
            bucket.cost += cost
            bucket.cost_nocache += full
            rows.append(_call_row(ev, call, cost, full, rates.priced))
        return rows

    def _count(self, ev: RequestEvent, cost: float, top: float, nocache: float, priced: bool) -> None:
        self.requests.inc((ev.model, ev.deployment, str(ev.status)))
        if ev.error_type or ev.status >= 400:
            self.errors.inc((ev.error_type or f"http_{ev.status}",))
        self.latency.observe((ev.model,), ev.latency_s)
        if ev.ttft_s is not None:
            self.ttft.observe((ev.model,), ev.ttft_s)
        self.overhead.observe((), ev.overhead_s)
        for kind, n in (
            ("prompt", ev.prompt_tokens),
            ("completion", ev.completion_tokens),
            ("cached", ev.cached_tokens),
        ):
            if n:
                self.tokens.inc((ev.model, ev.deployment, kind), n)
        self.cost.inc((ev.model, ev.deployment), cost)
        self.cost_top.inc((), top)
        self.cost_nocache.inc((), nocache)
        if not priced:
            self.unpriced.inc((ev.deployment,))

    def _bucket_of(self, ts: float) -> Bucket:
        start = ts - ts % BUCKET_S
        if not self.series or self.series[-1].t < start:
            self.series.append(Bucket(start))
        bucket = self.series[-1]
        if bucket.t > start:  # a late event: count it in the bucket it belongs to
            bucket = next((b for b in self.series if b.t == start), bucket)
        return bucket

    def _bucket(self, ev: RequestEvent, cost: float, top: float, nocache: float, cache: str) -> None:
        bucket = self._bucket_of(ev.ts)
        bucket.requests += 1
        bucket.errors += ev.status >= 400
        bucket.cost += cost
        bucket.cost_top += top
        bucket.cost_nocache += nocache
        bucket.hits += cache == "hit"
        bucket.lookups += cache != ""
        bucket.add_latency(ev.latency_s)

    def recent_requests(self) -> list[dict[str, Any]]:
        """The last requests, newest first, for the dashboard."""
        return [
            {
                "request_id": ev.request_id,
                "ts": ev.ts,
                "model": ev.model,
                "deployment": ev.deployment,
                "tier": tier,
                "cache": ev.annotations.get("cache", ""),
                "status": ev.status,
                "latency_ms": round(ev.latency_s * 1000, 1),
                "cost_usd": cost,
                "tokens": ev.prompt_tokens + ev.completion_tokens,
            }
            for ev, tier, cost in reversed(self.recent)
        ]

    def recent_samples(self, now: float) -> list[Sample]:
        """The samples inside the rolling window ending at ``now``."""
        edge = now - self.window_s
        while self.window and self.window[0].ts < edge - 60:
            self.window.popleft()  # keep the deque short; a minute of slack for late events
        return [s for s in self.window if edge <= s.ts <= now + 1]


def _verdict(accepted: bool | None) -> float | None:
    return None if accepted is None else float(accepted)


def _call_row(ev: RequestEvent, call: UpstreamCall, cost: float, full: float, priced: bool) -> Row:
    """The ledger row of one call made for ``ev``'s request: its own id, linked by ``parent_id``."""
    usage = call.usage
    return (
        call.request_id,
        ev.ts,
        ev.model,
        call.deployment,
        call.tier,
        "",
        "hit" if call.cache_hit else "",
        0,
        200,
        None,
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        call.latency_s,
        None,
        0.0,
        1,
        ev.api_key,
        ev.tenant,
        cost,
        0.0,
        full,
        int(priced),
        "",
        ev.team,
        ev.user,
        0,
        "",
        call.purpose,
        ev.request_id,
        _verdict(call.verdict),
    )
