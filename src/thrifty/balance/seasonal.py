"""A seasonal baseline of a group's demand, from the ledger's history.

Demand is measured as requests in flight, the unit the scaling policy thinks
in: by Little's law the mean number in flight over an hour is the sum of the
latencies of the requests served in it divided by 3600. The baseline keeps
that mean per bucket of the week (day of week x hour of day, UTC), averaged
over the weeks of history, and :meth:`SeasonalBaseline.forecast` answers the
largest bucket the next ``lead`` seconds touch, so a replica is started
before a recurring ramp rather than after it.

Fitting is pure (rows in, buckets out). :func:`ledger_rows` reads the ledger's
SQLite file read-only; the controller calls it in a worker thread at start and
every hour, never on a request's path.
"""

from __future__ import annotations

import math
import sqlite3
from collections import defaultdict
from collections.abc import Iterable

HOUR = 3600.0
WEEK_BUCKETS = 168  # hours in a week
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


class SeasonalBaseline:
    """Mean requests in flight per bucket of a repeating season (default: hours of the week)."""

    def __init__(self, bucket_s: float = HOUR, season: int = WEEK_BUCKETS) -> None:
        self.bucket_s = bucket_s
        self.season = season
        self.means: dict[int, float] = {}
        self.samples = 0  # rows fitted
        self.cycles = 0.0  # seasons of history behind the means

    def bucket(self, ts: float) -> int:
        """The bucket of unix time ``ts``; for weeks, Monday 00:00 UTC is bucket 0."""
        index = math.floor(ts / self.bucket_s)
        if self.season == WEEK_BUCKETS and self.bucket_s == HOUR:
            index += _EPOCH_WEEKDAY * 24
        return index % self.season

    def fit(self, rows: Iterable[tuple[float, float]]) -> SeasonalBaseline:
        """Fit from ``(finished_at, latency_s)`` rows; returns self."""
        busy: dict[int, float] = defaultdict(float)  # absolute bucket -> seconds of service
        for ts, latency in rows:
            busy[math.floor(ts / self.bucket_s)] += max(0.0, latency)
            self.samples += 1
        if not busy:
            self.means, self.cycles = {}, 0.0
            return self
        first, last = min(busy), max(busy)
        occurrences: dict[int, int] = defaultdict(int)  # buckets of the season seen in the span
        totals: dict[int, float] = defaultdict(float)
        for absolute in range(first, last + 1):
            key = self.bucket(absolute * self.bucket_s)
            occurrences[key] += 1
            totals[key] += busy.get(absolute, 0.0)
        self.means = {k: totals[k] / (occurrences[k] * self.bucket_s) for k in occurrences}
        self.cycles = (last - first + 1) / self.season
        return self

    def expected(self, ts: float) -> float | None:
        """Mean requests in flight in the bucket of ``ts`` (None when that bucket has no history)."""
        return self.means.get(self.bucket(ts))

    def forecast(self, now: float, lead: float) -> float | None:
        """The largest expected load over ``[now, now + lead]``; None without history."""
        if not self.means:
            return None
        steps = max(1, math.ceil(lead / self.bucket_s))
        values = [self.expected(now + i * lead / steps) for i in range(steps + 1)]
        known = [v for v in values if v is not None]
        return max(known) if known else None

    def status(self) -> dict[str, float]:
        return {
            "buckets": float(len(self.means)),
            "rows": float(self.samples),
            "seasons": round(self.cycles, 2),
        }


def ledger_rows(path: str, group: str, since: float) -> list[tuple[float, float]]:
    """``(ts, latency_s)`` of the group's answered requests since ``since``, read-only.

    A group's replica deployments are named ``<group>/replica-<n>``. A missing or
    unreadable ledger gives no rows (the forecast is then off, scaling stays reactive).
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        cursor = db.execute(
            "SELECT ts, latency_s FROM requests "
            "WHERE ts >= ? AND status < 400 AND substr(deployment, 1, ?) = ?",
            (since, len(group) + 1, group + "/"),
        )
        return [(float(ts), float(latency or 0.0)) for ts, latency in cursor]
    except sqlite3.Error:
        return []
    finally:
        db.close()
