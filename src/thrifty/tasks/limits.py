"""Concurrency limits: a fixed one, and an adaptive AIMD one.

A limit is asked two things: how many tasks may run now (``limit``), and
how each finished task went (``observe``). The task manager starts a task
only while fewer than ``limit`` run under it.

:class:`AimdLimit` raises its limit by one each time a full window of tasks
(``limit`` of them) finishes in good health, and cuts it by ``backoff`` when a
task is refused for overload (a 429, an overloaded queue), times out, or
takes far longer than the fastest recent latency. A failure of a task that
started before the last cut is not counted again (it was sent under the old
limit), so a burst of failures from tasks already in flight is one signal,
while a failure of a task sent after the cut cuts again. After a cut it
probes more carefully near the level where the last overload happened, which
keeps the error rate low once it has found the capacity.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol


class Outcome(Enum):
    """How a finished task went, as far as a limit cares."""

    OK = "ok"
    OVERLOAD = "overload"  # 429, Overloaded, timeout: the upstream is saturated
    ERROR = "error"  # any other failure: says nothing about capacity


class Limit(Protocol):
    @property
    def limit(self) -> int: ...

    def observe(self, latency_s: float, outcome: Outcome) -> None: ...


class FixedLimit:
    """A limit that never changes."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a concurrency limit must be >= 1, got {limit}")
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    def observe(self, latency_s: float, outcome: Outcome) -> None:
        return None


@dataclass(frozen=True)
class AimdSettings:
    initial: int = 4
    minimum: int = 1
    maximum: int = 1024
    backoff: float = 0.9  # multiply the limit by this on overload
    latency_tolerance: float = 2.0  # a sample this many times the baseline counts as overload
    careful: float = 4.0  # near the last overload level, windows are this many times longer

    def __post_init__(self) -> None:
        if not 1 <= self.minimum <= self.initial <= self.maximum:
            raise ValueError("AIMD limits need 1 <= minimum <= initial <= maximum")
        if not 0 < self.backoff < 1:
            raise ValueError("AIMD backoff must be between 0 and 1")
        if self.latency_tolerance <= 1:
            raise ValueError("AIMD latency_tolerance must be > 1")


class AimdLimit:
    """Additive increase, multiplicative decrease, driven by task outcomes."""

    def __init__(
        self,
        settings: AimdSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or AimdSettings()
        self._clock = clock
        self._limit = float(self.settings.initial)
        self._good = 0  # good outcomes in the current window
        self._last_cut = float("-inf")
        self._ceiling: float | None = None  # the limit at the last overload
        self._baseline: float | None = None  # lowest recent latency, slowly forgotten
        self.cuts = 0
        # (time, limit) at each change, for plots and tests; bounded
        self.history: deque[tuple[float, int]] = deque([(clock(), self.limit)], maxlen=4096)

    @property
    def limit(self) -> int:
        return int(self._limit)

    def observe(self, latency_s: float, outcome: Outcome) -> None:
        if outcome is Outcome.ERROR:
            return
        if outcome is Outcome.OK and self._slow(latency_s):
            outcome = Outcome.OVERLOAD
        if outcome is Outcome.OVERLOAD:
            self._cut(latency_s)
        else:
            self._grow()

    def _slow(self, latency_s: float) -> bool:
        base = self._baseline
        if base is None or latency_s < base:
            self._baseline = latency_s
            return False
        # forget the baseline slowly, so a permanently slower upstream is accepted
        self._baseline = base + (latency_s - base) * 0.01
        return latency_s > base * self.settings.latency_tolerance

    def _cut(self, latency_s: float) -> None:
        now = self._clock()
        if now - latency_s < self._last_cut:
            return  # sent under the limit before the last cut: already accounted for
        self._last_cut = now
        self._ceiling = self._limit
        self._limit = max(float(self.settings.minimum), self._limit * self.settings.backoff)
        self._good = 0
        self.cuts += 1
        self.history.append((now, self.limit))

    def _grow(self) -> None:
        self._good += 1
        window = self._limit
        if self._ceiling is not None and self._limit + 1 >= self._ceiling:
            window *= self.settings.careful
        if self._good < window:
            return
        self._good = 0
        before = self.limit
        self._limit = min(float(self.settings.maximum), self._limit + 1)
        if self.limit != before:
            self.history.append((self._clock(), self.limit))
