"""The adaptive limit grows while things go well and backs off on overload."""

from __future__ import annotations

import pytest

from thrifty.tasks import AimdLimit, AimdSettings, FixedLimit, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_fixed_limit_rejects_zero() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        FixedLimit(0)


def test_grows_by_one_per_healthy_window() -> None:
    limit = AimdLimit(AimdSettings(initial=4), clock=Clock())
    for _ in range(4):
        limit.observe(0.2, Outcome.OK)
    assert limit.limit == 5
    for _ in range(5):
        limit.observe(0.2, Outcome.OK)
    assert limit.limit == 6


def test_failures_sent_before_a_cut_count_once() -> None:
    clock = Clock()
    limit = AimdLimit(AimdSettings(initial=20, backoff=0.5), clock=clock)
    clock.now = 10.0
    limit.observe(0.2, Outcome.OVERLOAD)
    clock.now = 10.1
    limit.observe(0.2, Outcome.OVERLOAD)  # sent at 9.9, before the cut: same signal
    assert limit.limit == 10
    limit.observe(0.05, Outcome.OVERLOAD)  # sent at 10.05, after the cut: the limit is still too high
    assert limit.limit == 5
    assert limit.cuts == 2


def test_plain_errors_say_nothing_about_capacity() -> None:
    limit = AimdLimit(AimdSettings(initial=8), clock=Clock())
    for _ in range(50):
        limit.observe(0.2, Outcome.ERROR)
    assert limit.limit == 8


def test_rising_latency_counts_as_overload() -> None:
    limit = AimdLimit(AimdSettings(initial=10, backoff=0.5, latency_tolerance=2.0), clock=Clock())
    limit.observe(0.1, Outcome.OK)
    limit.observe(0.5, Outcome.OK)
    assert limit.limit == 5


def test_never_below_minimum_or_above_maximum() -> None:
    clock = Clock()
    limit = AimdLimit(AimdSettings(initial=2, minimum=2, maximum=3, backoff=0.5), clock=clock)
    limit.observe(0.1, Outcome.OVERLOAD)
    assert limit.limit == 2
    for _ in range(100):
        limit.observe(0.1, Outcome.OK)
    assert limit.limit == 3


def test_converges_near_a_hard_capacity() -> None:
    """A simulated upstream that refuses above 40 in flight: the limit settles just under 40."""
    clock = Clock()
    limit = AimdLimit(AimdSettings(initial=1, maximum=500), clock=clock)
    refused = served = 0
    seen = []
    for _step in range(400):  # one step = one round trip of `limit` requests
        clock.now += 0.25
        n = limit.limit
        for i in range(n):
            if i >= 40:
                refused += 1
                limit.observe(0.01, Outcome.OVERLOAD)
            else:
                served += 1
                limit.observe(0.2, Outcome.OK)
        seen.append(limit.limit)
    tail = seen[200:]
    assert min(tail) >= 36 and max(tail) <= 41
    assert refused / (refused + served) < 0.01


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum <= initial"):
        AimdSettings(initial=0)
    with pytest.raises(ValueError, match="backoff"):
        AimdSettings(backoff=1.5)
