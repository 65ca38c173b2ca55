"""Live numbers about one deployment: outstanding requests, latency, rate windows."""

from __future__ import annotations

import math
from collections import deque

from .clock import Clock


class SlidingCount:
    """A sum of amounts over the last ``window`` seconds (for rpm / tpm)."""

    def __init__(self, clock: Clock, window: float = 60.0) -> None:
        self.clock = clock
        self.window = window
        self.total = 0.0
        self._events: deque[tuple[float, float]] = deque()

    def _expire(self) -> None:
        horizon = self.clock.now() - self.window
        while self._events and self._events[0][0] <= horizon:
            self.total -= self._events.popleft()[1]

    def add(self, amount: float) -> None:
        self._expire()
        self._events.append((self.clock.now(), amount))
        self.total += amount

    def value(self) -> float:
        self._expire()
        return self.total

    def free_in(self, limit: float) -> float:
        """Seconds until the sum drops below ``limit`` (0 if it already is)."""
        self._expire()
        total = self.total
        for t, amount in self._events:
            if total < limit:
                break
            total -= amount
            if total < limit:
                return max(0.0, t + self.window - self.clock.now())
        return 0.0


class LatencyWindow:
    """The last ``size`` latencies, for a rolling quantile (hedging delay)."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, seconds: float) -> None:
        self._values.append(seconds)

    def __len__(self) -> int:
        return len(self._values)

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]


class Ewma:
    """An exponentially weighted moving average of latency, seconds, that fades when idle.

    ``current()`` shrinks the average by ``exp(-idle / fade)`` since the last sample, so
    a deployment that stopped getting traffic (after one slow answer, say) looks faster
    and faster until a strategy tries it again and learns its real latency.
    """

    def __init__(self, clock: Clock, alpha: float = 0.3, fade: float = 10.0) -> None:
        self.clock = clock
        self.alpha = alpha
        self.fade = fade
        self.value: float | None = None
        self.updated = clock.now()

    def add(self, sample: float) -> None:
        self.value = sample if self.value is None else self.alpha * sample + (1 - self.alpha) * self.value
        self.updated = self.clock.now()

    def current(self) -> float | None:
        if self.value is None:
            return None
        idle = max(0.0, self.clock.now() - self.updated)
        return self.value * math.exp(-idle / self.fade)
