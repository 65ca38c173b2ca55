"""The one retry rule: full-jitter exponential backoff, Retry-After honoured, a retry budget.

Every part of thrifty that tries a failed call again (the balancer across
deployments, the task manager for queued work) asks :meth:`RetrySettings.delay`
how long to wait, so backoff behaves the same everywhere:

- the k-th retry (``attempt`` k, from 0) waits a time drawn uniformly from
  ``[0, min(backoff_max, backoff_base * 2**k)]`` ("full jitter": retries of
  many clients spread out instead of arriving together);
- when the upstream said when to come back (a 429's Retry-After), the wait is
  at least that long, and a Retry-After beyond ``max_retry_after`` means give
  up now rather than hold the caller;
- a :class:`RetryBudget` caps retries at a share of traffic, so an upstream
  that fails every call is not sent (1 + retries) times the load.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .balance.clock import Clock


@dataclass(frozen=True)
class RetrySettings:
    retries: int = 2  # extra attempts after the first
    backoff_base: float = 0.05  # seconds; attempt k waits up to base * 2**k
    backoff_max: float = 2.0
    budget_ratio: float = 0.2  # retries may add at most this share of traffic...
    budget_min_per_s: float = 5.0  # ...plus this many retries per second
    max_retry_after: float = 30.0  # a longer Retry-After is not waited for

    def jitter(self, attempt: int, rng: random.Random) -> float:
        """A wait drawn uniformly from [0, min(backoff_max, backoff_base * 2**attempt)]."""
        ceiling = min(self.backoff_max, self.backoff_base * (2 ** max(0, attempt)))
        return rng.uniform(0.0, ceiling)

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float | None:
        """Seconds to wait before retry ``attempt`` (0 = the first retry); None: do not retry.

        ``retry_after`` is the upstream's own answer to "when may I come back"; a
        wait beyond ``max_retry_after`` is not worth holding the caller for.
        """
        wait = self.jitter(attempt, rng)
        if retry_after is not None and retry_after > 0:
            if retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return wait


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
