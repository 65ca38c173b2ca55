"""Backoff with full jitter, and a retry budget that stops retry storms."""

from __future__ import annotations

import random
from dataclasses import dataclass

from .clock import Clock


@dataclass(frozen=True)
class RetrySettings:
    retries: int = 2  # extra attempts after the first
    backoff_base: float = 0.05  # seconds; attempt k waits up to base * 2**k
    backoff_max: float = 2.0
    budget_ratio: float = 0.2  # retries may add at most this share of traffic...
    budget_min_per_s: float = 5.0  # ...plus this many retries per second
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for


def full_jitter(attempt: int, settings: RetrySettings, rng: random.Random) -> float:
    """A wait drawn uniformly from [0, min(max, base * 2**attempt)]."""
    ceiling = min(settings.backoff_max, settings.backoff_base * (2 ** max(0, attempt)))
    return rng.uniform(0.0, ceiling)


class RetryBudget:
    """A token bucket: each request earns ``ratio`` tokens, time earns a floor; a retry spends one."""

    def __init__(self, settings: RetrySettings, clock: Clock) -> None:
        self.ratio = settings.budget_ratio
        self.per_s = settings.budget_min_per_s
        self.capacity = max(10.0, self.per_s * 10)
        self.clock = clock
        self.tokens = self.capacity
        self.last = clock.now()
        self.denied = 0

    def _refill(self) -> None:
        now = self.clock.now()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.per_s)
        self.last = now

    def on_request(self) -> None:
        self._refill()
        self.tokens = min(self.capacity, self.tokens + self.ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        self.denied += 1
        return False
