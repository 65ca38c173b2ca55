"""One deployment inside a balanced group: its backend, breaker, load and limits."""

from __future__ import annotations

import math
from typing import Any

from ..backend import Backend
from ..config import Deployment
from ..errors import RateLimited, ThriftyError
from ..types import ChatRequest, message_text
from .breaker import BreakerSettings, CircuitBreaker
from .clock import Clock
from .events import ERROR_CLASSES, Change, Changes, error_class, new_changes
from .stats import Ewma, LatencyWindow, SlidingCount


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish estimate of prompt tokens: characters / 4."""
    chars = sum(len(message_text(m)) + 8 for m in request.messages)
    tools = request.params.get("tools")
    if tools:
        chars += len(repr(tools))
    return math.ceil(chars / 4)


def deployment_order(deployment: Deployment) -> int:
    """LiteLLM's ``order``: lower tiers take all traffic while any of them can serve.

    Read from the deployment's ``order`` field, else ``options.order``.
    """
    value: object = deployment.order
    if value is None:
        value = deployment.options.get("order", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"deployment {deployment.name!r}: order must be an integer, got {value!r}")
    return value


class Member:
    """A deployment's live state; the balancer asks it whether it can take a request."""

    def __init__(
        self, deployment: Deployment, backend: Backend, breaker: BreakerSettings, clock: Clock
    ) -> None:
        self.deployment = deployment
        self.backend = backend
        self.name = deployment.name
        self.clock = clock
        self.group = ""  # set by the group that takes it in, with its ``changes``
        self.changes: Changes = new_changes()
        self.breaker = CircuitBreaker(breaker, clock, self._breaker_changed)
        self.sent = 0  # attempts sent
        self.errors = dict.fromkeys(ERROR_CLASSES, 0)  # attempts failed, by class
        self.last_error = ""
        self.outstanding = 0
        self.ewma = Ewma(clock)
        self.latencies = LatencyWindow(100)  # whole answers (complete)
        self.first_chunks = LatencyWindow(100)  # time to first chunk (stream)
        self.rpm = SlidingCount(clock)
        self.tpm = SlidingCount(clock)
        self.healthy = True
        self.parked = False  # out of rotation: an elastic group's stopped or warming replica
        self.cooldown_until = 0.0
        self.served = 0
        self.failed = 0
        self.order = deployment_order(deployment)

    def unavailable_because(self, prompt_tokens: int) -> str | None:
        """Why this member cannot take a request now, or None if it can."""
        dep = self.deployment
        if self.parked:
            return "parked"
        if dep.context_window is not None and prompt_tokens > dep.context_window:
            return "context"
        if not self.healthy:
            return "unhealthy"
        if self.clock.now() < self.cooldown_until:
            return "rate_limited"
        if dep.max_concurrency is not None and self.outstanding >= dep.max_concurrency:
            return "busy"
        if dep.rpm is not None and self.rpm.value() >= dep.rpm:
            return "rate_limited"
        if dep.tpm is not None and self.tpm.value() >= dep.tpm:
            return "rate_limited"
        if not self.breaker.available():
            return "open"
        return None

    def free_in(self) -> float:
        """Seconds until rate limits let this member take a request again."""
        waits = [max(0.0, self.cooldown_until - self.clock.now())]
        if self.deployment.rpm is not None:
            waits.append(self.rpm.free_in(self.deployment.rpm))
        if self.deployment.tpm is not None:
            waits.append(self.tpm.free_in(self.deployment.tpm))
        return max(waits)

    def on_send(self, prompt_tokens: int) -> None:
        self.sent += 1
        self.outstanding += 1
        self.breaker.on_send()
        self.rpm.add(1)
        if self.deployment.tpm is not None:
            self.tpm.add(prompt_tokens)

    def on_done(self) -> None:
        self.outstanding -= 1

    def on_success(self, latency: float, completion_tokens: int = 0) -> None:
        self.served += 1
        self.ewma.add(latency)
        self.latencies.add(latency)
        self.breaker.on_success()
        if completion_tokens and self.deployment.tpm is not None:
            self.tpm.add(completion_tokens)

    def on_error(self, exc: BaseException) -> None:
        """Count an attempt's error against this deployment only when it is the deployment's fault.

        Each error declares that (``ThriftyError.deployment_fault``). A request
        thrifty could not build, a client's deadline, a refused request, or a
        foreign exception (a bug of ours, not something the upstream did) leave
        the breaker as it was, so no client can open it for everyone.
        """
        kind = error_class(exc)
        self.errors[kind] += 1
        self.last_error = kind
        if isinstance(exc, RateLimited) and exc.retry_after:
            self.cooldown_until = max(self.cooldown_until, self.clock.now() + exc.retry_after)
        if isinstance(exc, ThriftyError) and exc.deployment_fault:
            self.failed += 1
            self.breaker.on_failure()
        else:
            self.breaker.on_cancel()

    def on_cancel(self) -> None:
        self.breaker.on_cancel()

    def set_healthy(self, ok: bool, reason: str = "") -> None:
        """The health check's verdict; a change is noted for the observer."""
        if ok != self.healthy:
            self.changes.append(
                Change(self.group, self.name, "health", "healthy" if ok else "unhealthy", reason)
            )
        self.healthy = ok

    def _breaker_changed(self, state: str) -> None:
        b = self.breaker
        if state == "open":
            reason = f"{b.consecutive} consecutive failures, last: {self.last_error or 'unknown'}"
        elif state == "closed":
            reason = "a request succeeded"
        else:
            reason = "cooldown over, probing"
        self.changes.append(Change(self.group, self.name, "breaker", state, reason))

    def status(self) -> dict[str, Any]:
        ewma = self.ewma.current()
        return {
            **self.breaker.status(),
            "healthy": self.healthy,
            "parked": self.parked,
            "outstanding": self.outstanding,
            "ewma_latency_ms": None if ewma is None else round(ewma * 1000, 2),
            "requests_last_minute": int(self.rpm.value()),
            "served": self.served,
            "failed": self.failed,
            "cooling_s": round(max(0.0, self.cooldown_until - self.clock.now()), 3),
        }
