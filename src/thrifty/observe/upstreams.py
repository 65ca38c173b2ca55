"""Upstream failures in plain sight: per deployment health, breaker, errors, fallbacks.

Groups count on the hot path (integer increments, a deque append on a change of
state; ``balance/events.py``). :class:`Upstreams` reads those counts off the
path, in the observer's writer thread or a reader, at most every
``sample_s``: it keeps snapshots over the alert window for rates, logs each
breaker opening or closing and each fallback hop used (one line per subject and
state per ``log_every_s``, saying how many more happened meanwhile; the health
monitor logs its own verdicts, once per change), and
renders the figures for the dashboard, ``thrifty top`` and ``/metrics``.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..balance.events import ERROR_CLASSES, Change, GroupCounts
from ..types import FallbackTaken
from .metrics import Counter, Gauge, Metric

log = logging.getLogger("thrifty.observe")

_BREAKER = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
MAX_TRANSITIONS = 50  # recent changes kept for the dashboard


@runtime_checkable
class ReportsUpstreams(Protocol):
    """A model group that counts its deployments' attempts, errors and changes of state."""

    def upstream_counts(self) -> GroupCounts: ...

    def upstream_changes(self) -> list[Change]: ...


class LogLimiter:
    """At most one line per key every ``every_s``; the next line says how many were held back."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._last: dict[tuple[str, ...], float] = {}
        self._held: dict[tuple[str, ...], int] = {}

    def allow(self, key: tuple[str, ...], now: float, count: int = 1) -> int | None:
        """None to stay quiet; else how many of these were held back since the last line."""
        last = self._last.get(key)
        if last is not None and now - last < self.every_s:
            self._held[key] = self._held.get(key, 0) + count
            return None
        self._last[key] = now
        return self._held.pop(key, 0)


@dataclass(slots=True)
class _Fallbacks:
    """Fallbacks taken from one group to another, for the log line."""

    count: int = 0
    unlogged: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class Upstreams:
    """Samples the groups' counts; rates over the window, rate-limited log lines, figures."""

    def __init__(self, window_s: float, *, sample_s: float = 1.0, log_every_s: float = 60.0) -> None:
        self.window_s = window_s
        self.sample_s = sample_s
        self.sources: list[ReportsUpstreams] = []
        self.limiter = LogLimiter(log_every_s)
        self.counts: list[GroupCounts] = []
        self.transitions: deque[Change] = deque(maxlen=MAX_TRANSITIONS)
        self.down_since: dict[str, float] = {}  # deployment -> when it was first seen down
        self.fallbacks: dict[tuple[str, str], _Fallbacks] = {}
        self._history: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()
        self._sampled = float("-inf")

    def add(self, source: ReportsUpstreams) -> None:
        self.sources.append(source)

    # -- fed by the observer (writer thread, under its lock) ----------------------------

    def on_fallback(self, taken: FallbackTaken) -> None:
        hop = self.fallbacks.get((taken.source, taken.target))
        if hop is None:
            hop = self.fallbacks[(taken.source, taken.target)] = _Fallbacks()
        hop.count += 1
        hop.unlogged += 1
        hop.reasons[taken.reason] = hop.reasons.get(taken.reason, 0) + 1

    def tick(self, now: float, *, force: bool = False) -> None:
        """Read the groups' counts (at most every ``sample_s``), log what changed."""
        if not force and now - self._sampled < self.sample_s:
            return
        self._sampled = now
        counts = []
        for source in self.sources:
            counts.append(source.upstream_counts())
            for change in source.upstream_changes():
                self._note(change, now)
        self.counts = counts
        snapshot = {d.deployment: (d.attempts, sum(d.errors.values())) for g in counts for d in g.deployments}
        self._history.append((now, snapshot))
        while len(self._history) > 1 and self._history[0][0] < now - self.window_s:
            self._history.popleft()
        for group in counts:
            for d in group.deployments:
                if d.healthy and d.breaker == "closed":
                    self.down_since.pop(d.deployment, None)
                else:
                    self.down_since.setdefault(d.deployment, now)
        self._log_fallbacks(now)

    def _note(self, change: Change, now: float) -> None:
        self.transitions.append(change)
        if change.state == "half_open":
            return  # a probe is on its way; its outcome is the news
        if change.what == "health":
            return  # the health monitor logs its verdicts itself, at most once per check interval
        held = self.limiter.allow((change.what, change.deployment, change.state), now)
        if held is None:
            return
        more = f" ({held} more such changes in the last {self.limiter.every_s:g} s)" if held else ""
        log.log(
            logging.INFO if change.state == "closed" else logging.WARNING,
            "deployment %s of %s: breaker %s (%s)%s",
            change.deployment,
            change.group,
            change.state,
            change.reason,
            more,
        )

    def _log_fallbacks(self, now: float) -> None:
        for (source, target), hop in self.fallbacks.items():
            if not hop.unlogged:
                continue
            held = self.limiter.allow(("fallback", source, target), now, 0)
            if held is None:
                continue
            reasons = ", ".join(f"{r} {n}" for r, n in sorted(hop.reasons.items(), key=lambda kv: -kv[1]))
            log.warning(
                "fallback chain %s: %d requests went on to %s (%d since start; %s)",
                source,
                hop.unlogged,
                target,
                hop.count,
                reasons,
            )
            hop.unlogged = 0

    # -- reading -------------------------------------------------------------------------

    def window_rates(self) -> dict[str, tuple[int, int]]:
        """Per deployment: (attempts, failed attempts) over the window."""
        if not self._history:
            return {}
        first, last = self._history[0][1], self._history[-1][1]
        out = {}
        for name, (attempts, errors) in last.items():
            a0, e0 = first.get(name, (0, 0)) if len(self._history) > 1 else (0, 0)
            out[name] = (attempts - a0, errors - e0)
        return out

    def figures(self, now: float) -> list[dict[str, Any]]:
        """One row per deployment for the dashboard and ``thrifty top``."""
        rates = self.window_rates()
        rows = []
        for group in self.counts:
            for d in group.deployments:
                attempts, failed = rates.get(d.deployment, (0, 0))
                since = self.down_since.get(d.deployment)
                rows.append(
                    {
                        "group": group.group,
                        "deployment": d.deployment,
                        "healthy": d.healthy,
                        "breaker": d.breaker,
                        "down": since is not None,
                        "down_s": None if since is None else max(0.0, now - since),
                        "times_opened": d.times_opened,
                        "attempts": d.attempts,
                        "errors": dict(d.errors),
                        "window_attempts": attempts,
                        "window_errors": failed,
                        "error_rate": failed / attempts if attempts else None,
                    }
                )
        return rows

    def groups(self) -> list[dict[str, Any]]:
        return [
            {"group": g.group, "retries": g.retries, "hedges": g.hedges, "hedge_wins": g.hedge_wins}
            for g in self.counts
        ]

    def fallback_rows(self) -> list[dict[str, Any]]:
        return [
            {"from": s, "to": t, "count": hop.count, "reasons": dict(hop.reasons)}
            for (s, t), hop in sorted(self.fallbacks.items())
        ]

    def report(self, now: float) -> dict[str, Any]:
        """The JSON the dashboard and ``thrifty top`` show."""
        return {
            "deployments": self.figures(now),
            "groups": self.groups(),
            "fallbacks": self.fallback_rows(),
            "transitions": [
                {
                    "at": c.at,
                    "group": c.group,
                    "deployment": c.deployment,
                    "what": c.what,
                    "state": c.state,
                    "reason": c.reason,
                }
                for c in reversed(self.transitions)
            ],
        }

    def metrics(self) -> list[Metric]:
        labels = ("group", "deployment")
        healthy = Gauge("thrifty_deployment_healthy", "1 while the deployment passes health checks", labels)
        breaker = Gauge("thrifty_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", labels)
        opened = Counter("thrifty_breaker_opened", "Times the breaker opened", labels)
        attempts = Counter("thrifty_upstream_attempts", "Attempts sent to the deployment", labels)
        errors = Counter(
            "thrifty_upstream_errors",
            "Failed attempts by class: 4xx, 5xx, timeout, connection, other",
            (*labels, "class"),
        )
        rate = Gauge(
            "thrifty_upstream_error_rate", "Share of attempts that failed over the alert window", labels
        )
        retries = Counter("thrifty_retries", "Retries within the group", ("group",))
        hedges = Counter("thrifty_hedges", "Hedged second attempts started", ("group",))
        wins = Counter("thrifty_hedge_wins", "Answers a hedged second attempt won", ("group",))
        taken = Counter("thrifty_fallbacks_taken", "Requests a fallback chain sent on", ("from", "to"))
        window = self.window_rates()
        for group in self.counts:
            retries.inc((group.group,), group.retries)
            hedges.inc((group.group,), group.hedges)
            wins.inc((group.group,), group.hedge_wins)
            for d in group.deployments:
                key = (group.group, d.deployment)
                healthy.set(key, float(d.healthy))
                breaker.set(key, _BREAKER.get(d.breaker, 0.0))
                opened.inc(key, d.times_opened)
                attempts.inc(key, d.attempts)
                for kind in ERROR_CLASSES:
                    errors.inc((*key, kind), d.errors.get(kind, 0))
                sent, failed = window.get(d.deployment, (0, 0))
                rate.set(key, failed / sent if sent else 0.0)
        for (source, target), hop in self.fallbacks.items():
            taken.inc((source, target), hop.count)
        return [healthy, breaker, opened, attempts, errors, rate, retries, hedges, wins, taken]
