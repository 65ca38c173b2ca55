"""A small Prometheus text-format registry: counters, histograms, gauges.

Hand-written rather than prometheus_client because the observer updates a
dozen series per request and dict arithmetic is several times cheaper than
the client's per-child locks; every Observer owns its own registry (no global
state). Exposition follows the text format 0.0.4.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable

Labels = tuple[str, ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def label_text(names: Labels, values: Labels, extra: str = "") -> str:
    parts = [f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Labels = ()) -> None:
        self.name, self.help, self.labels = name, help, labels
        self.values: dict[Labels, float] = {}

    def inc(self, key: Labels = (), amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def total(self) -> float:
        return sum(self.values.values())

    def lines(self) -> Iterable[str]:
        suffix = "_total" if self.kind == "counter" else ""
        for key, value in sorted(self.values.items()):
            yield f"{self.name}{suffix}{label_text(self.labels, key)} {number(value)}"


class Gauge(Counter):
    kind = "gauge"

    def set(self, key: Labels, value: float) -> None:
        self.values[key] = value


class Histogram:
    kind = "histogram"

    def __init__(
        self, name: str, help: str, labels: Labels = (), buckets: tuple[float, ...] = LATENCY_BUCKETS
    ) -> None:
        self.name, self.help, self.labels, self.buckets = name, help, labels, buckets
        # per label set: one count per bucket, then +Inf, then the sum
        self.values: dict[Labels, list[float]] = {}

    def observe(self, key: Labels, value: float) -> None:
        row = self.values.get(key)
        if row is None:
            row = self.values[key] = [0.0] * (len(self.buckets) + 2)
        row[bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def lines(self) -> Iterable[str]:
        for key, row in sorted(self.values.items()):
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), row, strict=False):
                running += count
                le = f'le="{number(bound)}"'
                yield f"{self.name}_bucket{label_text(self.labels, key, le)} {number(running)}"
            yield f"{self.name}_sum{label_text(self.labels, key)} {number(row[-1])}"
            yield f"{self.name}_count{label_text(self.labels, key)} {number(running)}"


Metric = Counter | Histogram


def expose(metrics: Iterable[Metric]) -> str:
    """The Prometheus text exposition of the given metrics."""
    out: list[str] = []
    for metric in metrics:
        name = metric.name + ("_total" if metric.kind == "counter" else "")
        out.append(f"# HELP {name} {metric.help}")
        out.append(f"# TYPE {name} {metric.kind}")
        out.extend(metric.lines())
    out.append("")
    return "\n".join(out)
