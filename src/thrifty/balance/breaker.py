"""A circuit breaker per deployment: closed -> open -> half-open -> closed.

It opens after ``failures`` consecutive failures, or when the failure rate over
the last ``window`` seconds reaches ``failure_rate`` (with at least
``min_requests`` outcomes in the window). After ``cooldown`` seconds one probe
request is let through (half-open); its success closes the breaker, its
failure opens it again for another cooldown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .clock import Clock

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5
    failure_rate: float = 0.5
    window: float = 30.0
    min_requests: int = 20
    cooldown: float = 10.0


class CircuitBreaker:
    def __init__(
        self, settings: BreakerSettings, clock: Clock, on_change: Callable[[str], None] | None = None
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.on_change = on_change  # hears each new state (rare: never on a request that succeeds)
        self.state = CLOSED
        self.consecutive = 0
        self.opened_at = 0.0
        self.probing = False
        self.times_opened = 0
        self._outcomes: deque[tuple[float, bool]] = deque()

    def _refresh(self) -> None:
        if self.state == OPEN and self.clock.now() - self.opened_at >= self.settings.cooldown:
            self._set(HALF_OPEN)
            self.probing = False

    def available(self) -> bool:
        """Whether a request may be sent now (a half-open breaker admits one probe)."""
        self._refresh()
        if self.state == CLOSED:
            return True
        return self.state == HALF_OPEN and not self.probing

    def on_send(self) -> None:
        self._refresh()
        if self.state == HALF_OPEN:
            self.probing = True

    def on_success(self) -> None:
        self._record(True)
        self.consecutive = 0
        if self.state != CLOSED:
            self._set(CLOSED)
            self.probing = False
            self._outcomes.clear()

    def on_failure(self) -> None:
        self._record(False)
        self.consecutive += 1
        if self.state == HALF_OPEN or self._should_open():
            self._open()

    def on_recovered(self) -> None:
        """A health check saw the deployment come back: skip the rest of the cooldown, probe now."""
        if self.state == OPEN:
            self._set(HALF_OPEN)
            self.probing = False

    def on_cancel(self) -> None:
        """An attempt abandoned (hedge lost, client gone): free the probe slot."""
        self.probing = False

    def _record(self, ok: bool) -> None:
        now = self.clock.now()
        self._outcomes.append((now, ok))
        horizon = now - self.settings.window
        while self._outcomes and self._outcomes[0][0] < horizon:
            self._outcomes.popleft()

    def _should_open(self) -> bool:
        if self.state != CLOSED:
            return False
        if self.consecutive >= self.settings.failures:
            return True
        total = len(self._outcomes)
        if total < self.settings.min_requests:
            return False
        failed = sum(1 for _, ok in self._outcomes if not ok)
        return failed / total >= self.settings.failure_rate

    def _set(self, state: str) -> None:
        self.state = state
        if self.on_change is not None:
            self.on_change(state)

    def _open(self) -> None:
        self.opened_at = self.clock.now()
        self.probing = False
        self.times_opened += 1
        self._set(OPEN)

    def status(self) -> dict[str, Any]:
        self._refresh()
        total = len(self._outcomes)
        failed = sum(1 for _, ok in self._outcomes if not ok)
        return {
            "state": self.state,
            "consecutive_failures": self.consecutive,
            "window_requests": total,
            "window_failure_rate": round(failed / total, 4) if total else 0.0,
            "times_opened": self.times_opened,
        }
