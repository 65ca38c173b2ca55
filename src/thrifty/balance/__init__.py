"""Replicas, load balancing and failure handling for model groups.

``build_group`` puts a group's deployments behind a :class:`Balancer`
(strategy, retries with backoff, circuit breakers, timeouts, hedging,
admission control, health checks); ``build_fallbacks`` chains groups to their
fallbacks. ``ReplicaSupervisor`` runs local model servers as child processes.
"""

from __future__ import annotations

from .balancer import Balancer
from .breaker import BreakerSettings, CircuitBreaker
from .build import build_fallbacks, build_group
from .clock import Clock, FakeClock, MonotonicClock
from .fallbacks import FallbackChain
from .settings import BalanceSettings, parse_group, parse_section

__all__ = [
    "BalanceSettings",
    "Balancer",
    "BreakerSettings",
    "CircuitBreaker",
    "Clock",
    "FakeClock",
    "FallbackChain",
    "MonotonicClock",
    "build_fallbacks",
    "build_group",
    "parse_group",
    "parse_section",
]
