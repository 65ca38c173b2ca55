"""Elastic local capacity: the mechanism that follows :class:`~.scaling.ScalingPolicy`.

An :class:`ElasticGroup` is a balanced group over ``max_replicas`` supervised
replica slots, of which only some run. Every ``interval_s`` it samples the
group (requests in flight and queued, recent p95, the seasonal forecast),
asks the policy, and acts:

- **up**: start a stopped replica, wait for its health check, send it one
  warm-up request (the model is loaded and has generated a token), and only
  then put it in rotation; the time from its start to that point, and to its
  first served request, is measured; a replica that fails this is stopped and
  new starts back off (doubling, up to the supervisor's ``restart_backoff_max``);
- **down**: take the newest replica out of rotation, let its requests finish,
  then stop its process;
- **zero**: with no replica running, a request waits for the cold start
  (within its deadline) instead of failing.

Each decision that changes the count is logged (``thrifty.scaling``) with its
reason and kept for ``/admin/status`` and the dashboard's scaling panel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..types import ChatRequest, ChatResponse, Piece
from .balancer import Balancer
from .clock import Clock, MonotonicClock
from .member import Member
from .replicas import ReplicaSupervisor, SupervisedGroup
from .scaling import Decision, ScalingPolicy, ScalingSettings, Signals
from .seasonal import SeasonalBaseline, ledger_rows

log = logging.getLogger("thrifty.scaling")
DAY = 86400.0
_REFIT_EVERY = 3600.0


@dataclass
class Slot:
    """One replica slot: its balancer member and where it is in its life."""

    index: int
    member: Member
    state: str = "stopped"  # stopped | warming | ready | draining
    started_at: float = 0.0
    served_before: int = 0  # member.served when it went into rotation
    warm_s: float | None = None  # start -> in rotation
    first_served_s: float | None = None  # start -> first request served


class ElasticGroup(SupervisedGroup):
    """A group whose replica count follows its load (and, optionally, its seasonal forecast)."""

    def __init__(
        self,
        inner: Balancer,
        supervisor: ReplicaSupervisor,
        settings: ScalingSettings,
        *,
        clock: Clock | None = None,
        wall: Callable[[], float] = time.time,
        ledger_path: str | None = None,
    ) -> None:
        super().__init__(inner, supervisor)
        if len(inner.members) != len(supervisor.replicas):
            raise ValueError("one balancer member per replica slot")
        self.balancer = inner
        self.settings = settings
        self.policy = ScalingPolicy(settings)
        self.clock = clock or MonotonicClock()
        self.wall = wall
        self.ledger_path = ledger_path
        self.baseline: SeasonalBaseline | None = None
        self.slots = [Slot(i, m) for i, m in enumerate(inner.members)]
        self.decisions: deque[tuple[float, Decision]] = deque(maxlen=50)  # (unix time, decision)
        self.waiting = 0  # requests held while no replica is in rotation
        self.last_forecast: float | None = None
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._work: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._fitted_at = -_REFIT_EVERY
        self._failed_starts = 0  # in a row: replicas that never got into rotation
        self._hold_until = 0.0  # no new start before this (backoff after failed starts)
        for slot in self.slots:
            inner.park(slot.member.name, True)

    # -- counts ----------------------------------------------------------------

    def count(self, *states: str) -> int:
        return sum(1 for s in self.slots if s.state in states)

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        await self.supervisor.start(count=0)  # child configs written, nothing running yet
        await self.inner.start()
        await self._refit()
        first = self.policy.decide(self._signals())
        target = max(first.target, self.settings.min_replicas)
        await asyncio.gather(*(self._bring_up(slot) for slot in self.slots[:target]))
        self._loop = asyncio.get_running_loop().create_task(self._run())

    async def aclose(self) -> None:
        tasks = [t for t in (self._loop, *self._work) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None
        await super().aclose()

    # -- requests ---------------------------------------------------------------

    async def _capacity(self) -> None:
        """Hold a request while the group is at zero, until a replica is in rotation."""
        self.waiting += 1
        self._wake.set()
        try:
            while not self.count("ready"):
                self._ready.clear()
                await self._ready.wait()
        finally:
            self.waiting -= 1

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if not self._ready.is_set():
            await self._capacity()
        return await self.inner.complete(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        if not self._ready.is_set():
            await self._capacity()
        async for chunk in self.inner.stream(request):
            yield chunk

    # -- the control loop -----------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval_s)
            self._wake.clear()
            try:
                await self.step()
            except Exception:  # the loop must outlive one bad round
                log.exception("group %s: scaling round failed", self.name)

    def _signals(self) -> Signals:
        gate = self.balancer.gate
        load = gate.active + gate.queued + self.waiting
        p95 = self.balancer.latencies.quantile(0.95) if load else None
        forecast = None
        if self.baseline is not None:
            forecast = self.baseline.forecast(self.wall(), self.settings.lead_s)
        self.last_forecast = forecast
        return Signals(
            now=self.clock.now(),
            ready=self.count("ready"),
            warming=self.count("warming"),
            in_flight=gate.active,
            queued=gate.queued + self.waiting,
            p95_s=p95,
            forecast=forecast,
        )

    async def step(self) -> Decision:
        """One round: sample, decide, act; the decision."""
        self._note_first_served()
        if self.settings.predictive and self.clock.now() - self._fitted_at >= _REFIT_EVERY:
            await self._refit()
        decision = self.policy.decide(self._signals())
        if decision.change > 0 and self.clock.now() < self._hold_until:
            return decision  # backing off after a replica failed to start
        if decision.change:
            self.decisions.append((self.wall(), decision))
            log.info(
                "group %s: %d -> %d replicas (%s: %s)",
                self.name,
                decision.current,
                decision.target,
                decision.rule,
                decision.reason,
            )
            self._apply(decision.target)
        return decision

    def _apply(self, target: int) -> None:
        live = [s for s in self.slots if s.state in ("ready", "warming")]
        if target > len(live):
            stopped = [s for s in self.slots if s.state == "stopped"]
            for slot in stopped[: target - len(live)]:
                self._background(self._bring_up(slot))
        else:
            newest_first = sorted(live, key=lambda s: (s.state != "warming", -s.started_at))
            for slot in newest_first[: len(live) - target]:
                self._background(self._take_down(slot))

    def _background(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _bring_up(self, slot: Slot) -> None:
        slot.state = "warming"
        slot.started_at = self.clock.now()
        slot.warm_s = slot.first_served_s = None
        ok = await self.supervisor.start_replica(slot.index)
        why = "its health check never passed"
        if ok:
            why = await self._warm(slot.member)
        if slot.state != "warming":  # taken down while it warmed
            return
        if why:
            self._failed_starts += 1
            wait = min(self.supervisor.spec.restart_backoff_max, 0.5 * 2**self._failed_starts)
            self._hold_until = self.clock.now() + wait
            log.warning(
                "group %s: replica %d not put in rotation: %s; no new start for %.1fs",
                self.name,
                slot.index,
                why,
                wait,
            )
            slot.state = "stopped"
            await self.supervisor.stop_replica(slot.index)
            return
        self._failed_starts = 0
        slot.warm_s = self.clock.now() - slot.started_at
        slot.served_before = slot.member.served
        slot.state = "ready"
        self.balancer.park(slot.member.name, False)
        self._ready.set()
        log.info("group %s: replica %d in rotation after %.2fs (warmed)", self.name, slot.index, slot.warm_s)

    async def _warm(self, member: Member) -> str:
        """One real request, straight to the replica: '' once it generated a token, else why not."""
        request = ChatRequest(
            model=member.deployment.model,
            messages=[{"role": "user", "content": self.settings.warm_prompt}],
            params={"max_tokens": 1, "temperature": 0},
        )
        try:
            await asyncio.wait_for(member.backend.complete(request), self.supervisor.spec.ready_timeout)
        except Exception as exc:  # any failure keeps the replica out of rotation
            return f"warm-up request failed: {exc!r}"
        return ""

    async def _take_down(self, slot: Slot) -> None:
        was_ready = slot.state == "ready"
        slot.state = "draining"
        self.balancer.park(slot.member.name, True)
        if not self.count("ready"):
            self._ready.clear()
        if was_ready:
            while slot.member.outstanding > 0:
                await asyncio.sleep(0.05)
        await self.supervisor.stop_replica(slot.index)
        slot.state = "stopped"

    def _note_first_served(self) -> None:
        for slot in self.slots:
            if (
                slot.state == "ready"
                and slot.first_served_s is None
                and slot.member.served > slot.served_before
            ):
                slot.first_served_s = self.clock.now() - slot.started_at

    async def _refit(self) -> None:
        """Fit the seasonal baseline from the ledger, in a worker thread."""
        self._fitted_at = self.clock.now()
        if not self.settings.predictive or not self.ledger_path:
            return
        since = self.wall() - self.settings.history_days * DAY
        rows = await asyncio.to_thread(ledger_rows, self.ledger_path, self.name, since)
        self.baseline = SeasonalBaseline().fit(rows)

    # -- introspection ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        out = super().status()
        warm = [s.warm_s for s in self.slots if s.warm_s is not None]
        served = [s.first_served_s for s in self.slots if s.first_served_s is not None]
        out["scaling"] = {
            "min_replicas": self.settings.min_replicas,
            "max_replicas": self.settings.max_replicas,
            "ready": self.count("ready"),
            "warming": self.count("warming"),
            "draining": self.count("draining"),
            "waiting": self.waiting,
            "predictive": self.settings.predictive,
            "forecast_in_flight": None if self.last_forecast is None else round(self.last_forecast, 2),
            "cold_start_s": round(max(warm), 3) if warm else self.settings.cold_start_s,
            "start_to_first_served_s": round(max(served), 3) if served else None,
            "decisions": [{"time": t, **d.to_json()} for t, d in reversed(self.decisions)],
            "replicas": [
                {"index": s.index, "state": s.state, "warm_s": s.warm_s, "first_served_s": s.first_served_s}
                for s in self.slots
            ],
        }
        return out
