"""Anomalies in usage: a key's traffic to a model leaving its own recent baseline.

Per (key, model), requests, cost and errors are summed in buckets of
``bucket_s``. When a bucket closes, each figure is compared with the same
series' previous ``baseline`` buckets: it is a spike when it exceeds
``median + k * spread``, where the spread is the median absolute deviation
scaled to a normal's standard deviation (1.4826 * MAD), never less than a
tenth of the median, than the square root of the median for counts (their
Poisson noise, which a MAD of small integers understates) and a floor per
figure, so a flat baseline does not turn one extra request into an alert. A figure must also reach a minimum (requests,
errors, dollars) to count. All of it runs in the observer's writer thread or a
reader, never on the request path.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from statistics import median

from .settings import AnomalySettings

FIGURES = ("requests", "cost_usd", "errors")
_MAD_TO_SD = 1.4826
MAX_SERIES = 10_000  # (key, model) pairs watched at most; the quietest go first


@dataclass(frozen=True, slots=True)
class Anomaly:
    key: str
    model: str
    figure: str  # one of FIGURES
    value: float  # the figure in the bucket that just closed
    baseline: float  # the median of the baseline buckets
    limit: float  # median + k * spread
    bucket_start: float

    def message(self, bucket_s: float) -> str:
        per = "min" if bucket_s == 60 else f"{bucket_s:g} s"
        key = self.key or "(no key)"
        if self.figure == "cost_usd":
            figures = f"${self.value:.4f}/{per}, usually ${self.baseline:.4f} (limit ${self.limit:.4f})"
        else:
            figures = f"{self.value:g}/{per}, usually {self.baseline:g} (limit {self.limit:.3g})"
        name = {"requests": "request rate", "cost_usd": "cost rate", "errors": "error rate"}[self.figure]
        return f"anomaly: key {key} on model {self.model}: {name} {figures}"


class Anomalies:
    """Bucketed figures per (key, model) and the spike test over their baselines."""

    def __init__(self, settings: AnomalySettings) -> None:
        self.settings = settings
        self.bucket_s = settings.bucket_s
        self._open_at: float | None = None  # start of the bucket being filled
        self._open: dict[tuple[str, str], list[float]] = {}
        self._history: dict[tuple[str, str], deque[tuple[float, float, float]]] = {}
        self.found: list[Anomaly] = []  # spikes of the last closed bucket

    def add(self, ts: float, key: str, model: str, cost: float, error: bool) -> None:
        """Count one request (off the hot path: the writer thread)."""
        start = ts - ts % self.bucket_s
        if self._open_at is None:
            self._open_at = start
        elif start > self._open_at:
            self._close_until(start)
        elif start < self._open_at:
            return  # too late for a bucket already judged
        sums = self._open.get((key, model))
        if sums is None:
            sums = self._open[(key, model)] = [0.0, 0.0, 0.0]
        sums[0] += 1
        sums[1] += cost
        sums[2] += error

    def check(self, now: float) -> list[Anomaly]:
        """The spikes of the last bucket closed by ``now`` (closing the open one if it is over)."""
        start = now - now % self.bucket_s
        if self._open_at is not None and start > self._open_at:
            self._close_until(start)
        return self.found

    def _close_until(self, start: float) -> None:
        """Close the open bucket (judging it), and empty buckets up to ``start``."""
        assert self._open_at is not None
        closed_at = self._open_at
        gaps = min(int((start - closed_at) / self.bucket_s) - 1, self.settings.baseline)
        self.found = self._judge(closed_at)
        keep = self.settings.baseline + 1
        for series in set(self._history) | set(self._open):
            history = self._history.get(series)
            if history is None:
                history = self._history[series] = deque(maxlen=keep)
            sums = self._open.get(series, (0.0, 0.0, 0.0))
            history.append((sums[0], sums[1], sums[2]))
            for _ in range(gaps):
                history.append((0.0, 0.0, 0.0))
            if gaps > 0 and not any(h[0] for h in history):
                del self._history[series]  # quiet for the whole baseline: forget it
        if gaps > 0:
            self.found = []  # the bucket judged is not the last one any more
        self._open = {}
        self._open_at = start
        self._bound()

    def _judge(self, bucket_start: float) -> list[Anomaly]:
        s = self.settings
        found = []
        for (key, model), sums in self._open.items():
            history = self._history.get((key, model))
            if history is None or len(history) < s.min_baseline:
                continue
            recent = list(history)[-s.baseline :]
            for index, figure in enumerate(FIGURES):
                value = sums[index]
                if value < s.minimum[figure]:
                    continue
                past = [h[index] for h in recent]
                middle = median(past)
                spread = median(abs(v - middle) for v in past) * _MAD_TO_SD
                counted = figure != "cost_usd"  # counts vary at least like a Poisson process
                spread = max(spread, 0.1 * middle, middle**0.5 if counted else 0.0, s.floor[figure])
                limit = middle + s.k * spread
                if value > limit:
                    found.append(Anomaly(key, model, figure, value, middle, limit, bucket_start))
        return found

    def _bound(self) -> None:
        extra = len(self._history) - MAX_SERIES
        if extra > 0:
            quiet = sorted(self._history, key=lambda k: sum(h[0] for h in self._history[k]))
            for series in quiet[:extra]:
                del self._history[series]
