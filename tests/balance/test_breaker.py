"""The breaker opens on failures, probes after a cooldown, and closes on success."""

from __future__ import annotations

from thrifty.balance import BreakerSettings, CircuitBreaker, FakeClock


def breaker(clock: FakeClock, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerSettings(**kw), clock)  # type: ignore[arg-type]


def test_opens_after_consecutive_failures_and_stays_open_during_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=3, cooldown=10)
    for _ in range(2):
        b.on_failure()
    assert b.available()
    b.on_failure()
    assert b.status()["state"] == "open" and not b.available()
    clock.advance(9.9)
    assert not b.available()


def test_success_resets_the_consecutive_count() -> None:
    b = breaker(FakeClock(), failures=3)
    for _ in range(5):
        b.on_failure()
        b.on_failure()
        b.on_success()
    assert b.status()["state"] == "closed"


def test_failure_rate_over_window_opens() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=100, failure_rate=0.5, min_requests=10, window=30)
    for i in range(10):
        b.on_failure() if i % 2 else b.on_success()
    assert b.status()["state"] == "open"


def test_old_outcomes_leave_the_window() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=100, failure_rate=0.5, min_requests=4, window=10)
    b.on_failure()
    b.on_failure()
    clock.advance(11)
    b.on_success()
    b.on_success()
    b.on_failure()
    assert b.status()["state"] == "closed"


def test_half_open_admits_one_probe_whose_success_closes() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, cooldown=5)
    b.on_failure()
    clock.advance(5)
    assert b.available()
    b.on_send()
    assert b.status()["state"] == "half_open" and not b.available()
    b.on_success()
    assert b.status()["state"] == "closed" and b.available()


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, cooldown=5)
    b.on_failure()
    clock.advance(5)
    b.on_send()
    b.on_failure()
    assert b.status()["state"] == "open" and b.status()["times_opened"] == 2
    clock.advance(4)
    assert not b.available()


def test_cancelled_probe_frees_the_slot() -> None:
    clock = FakeClock()
    b = breaker(clock, failures=1, cooldown=1)
    b.on_failure()
    clock.advance(1)
    b.on_send()
    b.on_cancel()
    assert b.available()
