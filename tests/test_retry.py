"""The one retry rule: full-jitter backoff, Retry-After honoured, a budget against retry storms."""

from __future__ import annotations

import random

from thrifty.balance.clock import FakeClock
from thrifty.retry import RetryBudget, RetrySettings


def test_backoff_is_full_jitter_doubling_up_to_the_cap() -> None:
    rule = RetrySettings(backoff_base=0.1, backoff_max=0.5)
    rng = random.Random(7)
    for attempt, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.5), (10, 0.5)]:
        waits = [rule.delay(attempt, rng) for _ in range(300)]
        assert all(w is not None and 0.0 <= w <= ceiling for w in waits)
        assert max(w for w in waits if w is not None) > 0.8 * ceiling  # spread over the whole range
        assert min(w for w in waits if w is not None) < 0.2 * ceiling


def test_retry_after_is_the_least_wait() -> None:
    rule = RetrySettings(backoff_base=0.1, backoff_max=0.5, max_retry_after=30)
    rng = random.Random(1)
    assert all(rule.delay(0, rng, retry_after=3.0) == 3.0 for _ in range(50))


def test_retry_after_beyond_the_limit_means_give_up() -> None:
    rule = RetrySettings(max_retry_after=10)
    assert rule.delay(0, random.Random(), retry_after=120.0) is None
    assert rule.delay(0, random.Random(), retry_after=10.0) == 10.0


def test_budget_allows_a_share_of_traffic_then_refills_with_time() -> None:
    clock = FakeClock()
    budget = RetryBudget(RetrySettings(budget_ratio=0.5, budget_min_per_s=1.0), clock)
    budget.tokens = 0.0
    assert not budget.try_spend() and budget.denied == 1
    budget.on_request()
    budget.on_request()  # two requests earn one retry
    assert budget.try_spend() and not budget.try_spend()
    clock.advance(1.0)  # the floor: one retry per second
    assert budget.try_spend()
