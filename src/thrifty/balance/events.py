"""What a group tells the observer about its deployments: counts, and changes of state.

Counting stays on the hot path as integer increments (an attempt sent, an
error of a class); a breaker or health change is a deque append. The observer
reads the counts and drains the changes off the path (its writer thread), where
rates, log lines and alerts are made.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ..errors import RateLimited, UpstreamConnectionError, UpstreamStatusError, UpstreamTimeout

# upstream errors by class, in the order they are shown
ERROR_CLASSES = ("4xx", "5xx", "timeout", "connection", "other")
MAX_CHANGES = 1000  # changes held between two reads by the observer, at most


def error_class(exc: BaseException) -> str:
    """The class an attempt's error counts under, decided by its type."""
    if isinstance(exc, UpstreamTimeout):
        return "timeout"
    if isinstance(exc, UpstreamConnectionError):
        return "connection"
    if isinstance(exc, UpstreamStatusError):
        return "5xx" if exc.upstream_status >= 500 else "4xx"
    if isinstance(exc, RateLimited):
        return "4xx"
    return "other"


@dataclass(frozen=True, slots=True)
class Change:
    """A deployment's breaker or health changed state."""

    group: str
    deployment: str
    what: str  # "breaker" or "health"
    state: str  # breaker: closed, open, half_open; health: healthy, unhealthy
    reason: str = ""
    at: float = field(default_factory=time.time)  # wall-clock time, for people


Changes = deque[Change]


def new_changes() -> Changes:
    return deque(maxlen=MAX_CHANGES)


@dataclass(frozen=True, slots=True)
class DeploymentCounts:
    """One deployment's state now and its counts since start."""

    deployment: str
    healthy: bool
    breaker: str
    times_opened: int
    attempts: int
    errors: dict[str, int]  # by class (ERROR_CLASSES)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """A model group's deployments, and its retries and hedges since start."""

    group: str
    retries: int
    hedges: int
    hedge_wins: int
    deployments: tuple[DeploymentCounts, ...]
