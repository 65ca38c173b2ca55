"""When to add or remove a local replica: a pure policy over observed signals and a clock.

:class:`ScalingPolicy` is told what the group looks like now (:class:`Signals`:
replicas ready and warming, requests in flight and queued, recent p95 latency,
and optionally the seasonal forecast) and answers how many replicas the group
should have, with the reason (:class:`Decision`). It never sleeps, starts or
stops anything: :mod:`thrifty.balance.elastic` samples the signals, asks, and
does the work. Time comes in with the signals, so a test drives it with any clock.

The rules, in order:

- **cold start**: no replica and a request waiting -> one replica (the request
  waits ``cold_start_s``, the stated cost of ``min_replicas: 0``);
- **demand**: requests in flight + queued, averaged over the last
  ``window_s``, need ``ceil(load / target_in_flight)`` replicas; more than the
  group has (ready + warming) -> scale up to that at once;
- **queue** / **latency**: a queue longer than ``scale_up_queue`` per replica,
  or p95 above ``scale_up_p95_s``, adds one replica unless one is already warming;
- **forecast**: the seasonal baseline's expected load over the next
  ``lead_s`` needs that many replicas, before the load arrives;
- **quiet period**: only after utilisation has stayed under
  ``scale_down_utilisation`` for ``quiet_s`` does one replica go (then the
  clock starts again), never below what the forecast wants, and after only
  ``forecast_quiet`` x ``quiet_s`` when the forecast wants two or more fewer; to zero
  only after ``idle_to_zero_s`` without any request.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import Where, check_count, check_fraction, check_positive, check_positive_int, reject_unknown


@dataclass(frozen=True)
class ScalingSettings:
    """A group's ``autoscale:`` option."""

    min_replicas: int = 1
    max_replicas: int = 2
    target_in_flight: float = 2.0  # requests one replica serves well at once (utilisation 1.0)
    window_s: float = 5.0  # demand is averaged over this many seconds
    scale_up_queue: float = 1.0  # queued requests per replica that add a replica
    scale_up_p95_s: float | None = None  # recent p95 above this adds a replica (off by default)
    scale_down_utilisation: float = 0.5  # below this for quiet_s, one replica goes
    quiet_s: float = 60.0
    idle_to_zero_s: float = 300.0  # min_replicas 0: no request for this long -> no replica
    interval_s: float = 1.0  # seconds between decisions
    cold_start_s: float = 10.0  # stated cost of a start from zero (replaced by the measured one)
    warm_prompt: str = "Say OK."  # a replica answers this (one token) before it takes traffic
    predictive: bool = False
    lead_s: float = 900.0  # the forecast looks this far ahead (cover a replica's start)
    history_days: int = 28  # of ledger rows behind the forecast
    headroom: float = 1.0  # forecast load x this
    forecast_quiet: float = 0.25  # share of quiet_s to wait when the forecast also wants fewer replicas

    def __post_init__(self) -> None:
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError("max_replicas must be at least min_replicas and at least 1")


@dataclass(frozen=True)
class Signals:
    """The group as the controller saw it at ``now``."""

    now: float
    ready: int  # replicas taking traffic
    warming: int = 0  # replicas started, not yet taking traffic
    in_flight: int = 0
    queued: int = 0
    p95_s: float | None = None  # recent latency of whole answers
    forecast: float | None = None  # expected requests in flight over the next lead_s (seasonal)

    @property
    def replicas(self) -> int:
        return self.ready + self.warming

    @property
    def load(self) -> int:
        return self.in_flight + self.queued


@dataclass(frozen=True)
class Decision:
    """How many replicas the group should have, and why."""

    at: float
    current: int  # ready + warming when decided
    target: int
    reason: str
    rule: str  # cold_start | demand | queue | latency | forecast | quiet | idle | hold

    @property
    def change(self) -> int:
        return self.target - self.current

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "from": self.current,
            "to": self.target,
            "rule": self.rule,
            "reason": self.reason,
        }


class ScalingPolicy:
    """Reactive scaling with an optional forecast floor; deterministic given its inputs."""

    def __init__(self, settings: ScalingSettings) -> None:
        self.settings = settings
        self._samples: deque[tuple[float, int]] = deque()
        self._calm_since: float | None = None
        self._last_request: float | None = None

    def needed(self, load: float) -> int:
        """Replicas that serve ``load`` requests at once at the target utilisation."""
        return math.ceil(load / self.settings.target_in_flight - 1e-9) if load > 0 else 0

    def _clamp(self, n: int) -> int:
        return max(self.settings.min_replicas, min(self.settings.max_replicas, n))

    def _average(self, now: float, load: int) -> float:
        self._samples.append((now, load))
        while self._samples and self._samples[0][0] <= now - self.settings.window_s:
            self._samples.popleft()
        return sum(n for _, n in self._samples) / len(self._samples)

    def decide(self, signals: Signals) -> Decision:
        s, now, current = self.settings, signals.now, signals.replicas
        if signals.load > 0 or self._last_request is None:
            self._last_request = now
        average = self._average(now, signals.load)
        floor = 0 if signals.forecast is None else self._clamp(self.needed(signals.forecast * s.headroom))

        def decision(target: int, rule: str, reason: str) -> Decision:
            return self._to(signals, target, rule, reason)

        if current == 0 and signals.load > 0:
            return decision(
                self._clamp(max(1, self.needed(average), floor)),
                "cold_start",
                f"{signals.load} request(s) waiting and no replica (cold start ~{s.cold_start_s:.0f}s)",
            )
        want = self._clamp(self.needed(average))
        if want > current:
            return decision(
                want, "demand", f"{average:.1f} requests in flight+queued over {s.window_s:g}s need {want}"
            )
        if signals.warming == 0 and current < s.max_replicas and current > 0:
            if signals.queued > s.scale_up_queue * current:
                return decision(current + 1, "queue", f"{signals.queued} queued for {current} replica(s)")
            if (
                s.scale_up_p95_s is not None
                and signals.p95_s is not None
                and signals.p95_s > s.scale_up_p95_s
            ):
                return decision(
                    current + 1, "latency", f"p95 {signals.p95_s:.2f}s above {s.scale_up_p95_s:g}s"
                )
        if floor > current:
            return decision(
                floor, "forecast", f"expected {signals.forecast:.1f} in flight within {s.lead_s:g}s"
            )
        return self._maybe_down(signals, average, floor)

    def _to(self, signals: Signals, target: int, rule: str, reason: str) -> Decision:
        if target < signals.replicas:
            self._calm_since = signals.now  # after a step down the quiet period starts again
        elif target > signals.replicas:
            self._calm_since = None
        return Decision(signals.now, signals.replicas, target, reason, rule)

    def _maybe_down(self, signals: Signals, average: float, floor: int) -> Decision:
        s, now, current = self.settings, signals.now, signals.replicas

        def decision(target: int, rule: str, reason: str) -> Decision:
            return self._to(signals, target, rule, reason)

        below = max(floor, s.min_replicas)
        if current > max(below, 1):
            utilisation = average / (current * s.target_in_flight)
            if utilisation >= s.scale_down_utilisation or signals.warming:
                self._calm_since = None
                return decision(current, "hold", "busy")
            if self._calm_since is None:
                self._calm_since = now
            quiet = s.quiet_s
            if signals.forecast is not None and floor < current - 1:
                quiet *= s.forecast_quiet  # the season clearly agrees the load is going: wait less
            if now - self._calm_since >= quiet:
                return decision(
                    current - 1,
                    "quiet",
                    f"utilisation under {s.scale_down_utilisation:.0%} for {now - self._calm_since:.0f}s",
                )
            return decision(current, "hold", "waiting out the quiet period")
        if current == 1 and below == 0 and self._last_request is not None:
            idle = now - self._last_request
            if idle >= s.idle_to_zero_s:
                return decision(0, "idle", f"no request for {idle:.0f}s")
        self._calm_since = None
        return decision(current, "hold", "at the floor")


# -- the ``autoscale:`` group option --------------------------------------------------

_FLOATS = {
    "target_in_flight",
    "forecast_quiet",
    "window_s",
    "scale_up_queue",
    "interval_s",
    "cold_start_s",
    "lead_s",
    "quiet_s",
    "idle_to_zero_s",
    "headroom",
}
KEYS = _FLOATS | {
    "min_replicas",
    "max_replicas",
    "scale_up_p95_s",
    "scale_down_utilisation",
    "warm_prompt",
    "predictive",
    "history_days",
}


def parse_scaling(raw: Any, where: Where) -> ScalingSettings:
    """A group's ``autoscale:`` mapping, validated; every error names its key."""
    if not isinstance(raw, Mapping):
        raise where.error("must be a mapping (min_replicas, max_replicas, ...)")
    reject_unknown(raw, KEYS, where)
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        at = where / key
        if key == "min_replicas":
            changes[key] = check_count(value, at)
        elif key in ("max_replicas", "history_days"):
            changes[key] = check_positive_int(value, at)
        elif key == "scale_up_p95_s":
            changes[key] = None if value is None else check_positive(value, at)
        elif key == "scale_down_utilisation":
            changes[key] = check_fraction(value, at)
        elif key == "predictive":
            if not isinstance(value, bool):
                raise at.error(f"must be true or false, got {value!r}")
            changes[key] = value
        elif key == "warm_prompt":
            if not isinstance(value, str) or not value:
                raise at.error("must be a non-empty string")
            changes[key] = value
        else:
            changes[key] = check_positive(value, at)
    settings = ScalingSettings()
    low = changes.get("min_replicas", settings.min_replicas)
    high = changes.get("max_replicas", max(settings.max_replicas, low))
    if high < max(low, 1):
        raise (where / "max_replicas").error(f"must be at least min_replicas ({low}) and at least 1")
    return replace(settings, **{**changes, "max_replicas": high})
