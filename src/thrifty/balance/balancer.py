"""A model group's deployments behind one backend: pick, retry, fail over, hedge.

Per request: wait for an admission slot, pick a deployment the strategy likes
among those that are healthy, closed (breaker), under their rpm/tpm and
concurrency limits and big enough for the prompt; on a retryable error try
another deployment at once, or back off with full jitter when every candidate
has been tried, within the retry budget and the request's deadline. A stream
is retried only until its first chunk; after that an error is raised to the
caller (the server turns it into an SSE error event).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from ..backend import Choice
from ..deadline import Timer, requested_timeout
from ..errors import (
    ContextWindowExceeded,
    NoDeploymentAvailable,
    RateLimited,
    RequestTimeout,
    ThriftyError,
    UpstreamTimeout,
)
from ..retry import RetryBudget
from ..types import ChatRequest, ChatResponse, Piece, RawEvents
from .admission import AdmissionGate
from .clock import Clock, MonotonicClock
from .events import Change, DeploymentCounts, GroupCounts, new_changes
from .health import HealthMonitor, Probe
from .hedge import Hedged, Hedging, Single
from .member import Member, estimate_tokens
from .settings import BalanceSettings
from .stats import LatencyWindow
from .strategies import make_strategy

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Stream = AsyncGenerator[Piece, None]


class Attempt(Protocol[T_co]):
    """One try on one deployment: a whole answer, or a stream and its first chunk."""

    def __call__(
        self, member: Member, request: ChatRequest, deadline: float | None, tokens: int
    ) -> Awaitable[T_co]: ...


def _no_backup() -> None:
    """Without hedging there is never a second attempt."""


async def _keep(response: ChatResponse) -> None:
    """A losing hedge's whole answer holds nothing open."""


async def _close(opened: tuple[Stream, Piece]) -> None:
    """A losing hedge's stream: close it, so its deployment is free at once."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await opened[0].aclose()


class Balancer(Choice):
    """One model group: strategy, retries, breakers, timeouts, hedging, admission, health."""

    def __init__(
        self,
        name: str,
        members: Sequence[Member],
        settings: BalanceSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        probe: Probe | None = None,
    ) -> None:
        super().__init__(name, [m.backend for m in members])
        if not members:
            raise ValueError(f"model group {name!r} has no deployments")
        self.members = list(members)
        self.changes = new_changes()  # breaker and health changes, drained by the observer
        for member in self.members:
            member.group, member.changes = name, self.changes
        self.retries = 0
        self.settings = settings
        self.clock = clock or MonotonicClock()
        self.rng = rng or random.Random()
        self.strategy = make_strategy(settings.strategy, settings.affinity, self.rng)
        self.budget = RetryBudget(settings.retry, self.clock)
        self.latencies = LatencyWindow()  # whole answers, all deployments
        self.first_chunks = LatencyWindow()  # time to first chunk, all deployments
        self.hedging: Hedging = Hedged(self.hedge_delay) if settings.hedge else Single()
        self.hedges = 0
        self.gate = AdmissionGate(
            name, _group_concurrency(settings, self.members), settings.max_queue, self._typical_latency
        )
        self.health = HealthMonitor(
            self.members,
            interval=settings.health_interval,
            timeout=settings.health_timeout,
            only_self_hosted=settings.health_check is None,
            probe=probe,
        )
        if settings.health_check is False:
            self.health.targets = []

    async def start(self) -> None:
        await super().start()
        self.health.start()

    async def aclose(self) -> None:
        await self.health.stop()
        await super().aclose()

    def park(self, name: str, parked: bool) -> None:
        """Take deployment ``name`` out of rotation, or put it back (elastic scaling's switch).

        When the group's admission limit is the sum of its deployments' limits,
        it follows the deployments in rotation.
        """
        member = next(m for m in self.members if m.name == name)
        member.parked = parked
        if not parked:
            member.healthy = True
            member.breaker.on_recovered()
        if self.settings.max_concurrency is None and self.gate.max_concurrency is not None:
            live = [m.deployment.max_concurrency or 0 for m in self.members if not m.parked]
            self.gate.resize(max(1, sum(live)))

    # -- picking -----------------------------------------------------------

    def choose(self, request: ChatRequest, tried: set[str], prompt_tokens: int) -> Member:
        """A member for the next attempt; untried ones first. Raises when none can serve."""
        reasons: dict[str, str] = {}
        free: list[Member] = []
        for member in self.members:
            reason = member.unavailable_because(prompt_tokens)
            if reason is None:
                free.append(member)
            else:
                reasons[member.name] = reason
        pool = [m for m in free if m.name not in tried] or free
        if pool:
            tier = min(m.order for m in pool)
            return self.strategy([m for m in pool if m.order == tier], request)
        raise self._none_available(reasons, prompt_tokens)

    def _none_available(self, reasons: dict[str, str], prompt_tokens: int) -> ThriftyError:
        if all(r == "context" for r in reasons.values()):
            biggest = max(m.deployment.context_window or 0 for m in self.members)
            return ContextWindowExceeded(
                f"the prompt (~{prompt_tokens} tokens) exceeds every deployment of {self.name!r} "
                f"(largest context window {biggest})",
                param="messages",
            )
        limited = [m for m in self.members if reasons.get(m.name) in ("rate_limited", "busy")]
        if limited:
            wait = min(m.free_in() for m in limited)
            return RateLimited(
                f"every deployment of {self.name!r} is at its rate or concurrency limit",
                retry_after=max(wait, 0.1),
            )
        summary = ", ".join(f"{n}: {r}" for n, r in reasons.items())
        return NoDeploymentAvailable(f"no deployment of {self.name!r} can take requests ({summary})")

    # -- deadlines and retries ---------------------------------------------

    def deadline(self, request: ChatRequest) -> float | None:
        timeout = request_timeout(request)
        if timeout is None:
            timeout = self.settings.timeout
        return None if timeout is None else self.clock.now() + timeout

    def _attempt_timeout(self, member: Member, deadline: float | None) -> float:
        timeout = member.deployment.timeout
        if deadline is not None:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                raise UpstreamTimeout(f"request timed out before trying {member.name}")
            timeout = min(timeout, remaining)
        return timeout

    async def _may_retry(
        self, exc: ThriftyError, attempt: int, tried: set[str], request: ChatRequest, deadline: float | None
    ) -> bool:
        """Whether to try again after ``exc``; sleeps the backoff when it will."""
        if not exc.retryable or attempt >= self.settings.retry.retries:
            return False
        if not self.budget.try_spend():
            request.trace.retry_budget_exhausted = True
            return False
        tokens = estimate_tokens(request)
        untried = [m for m in self.members if m.name not in tried and m.unavailable_because(tokens) is None]
        wait = 0.0
        if not untried:
            # after a 429, the upstream's wait is when the first deployment leaves its cooldown
            asked = exc.retry_after if isinstance(exc, RateLimited) else None
            ready = min(m.free_in() for m in self.members) if asked else None
            delay = self.settings.retry.delay(attempt, self.rng, ready)
            if delay is None:
                return False
            wait = delay
        if deadline is not None and self.clock.now() + wait >= deadline:
            return False
        if wait > 0:
            await self.clock.sleep(wait)
        return True

    def _typical_latency(self) -> float:
        return self.latencies.quantile(0.5) or 1.0

    # -- the attempt loop, for answers and streams alike --------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        deadline = self.deadline(request)
        async with self.gate.slot():
            self.budget.on_request()
            return await self._attempts(request, deadline, self._call, _keep, stream=False)

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        deadline = self.deadline(request)
        async with self.gate.slot():
            self.budget.on_request()
            attempt_stream, first = await self._attempts(request, deadline, self._open, _close, stream=True)
            try:
                yield first
                async for chunk in attempt_stream:
                    yield chunk
            finally:
                await attempt_stream.aclose()

    async def _attempts(
        self,
        request: ChatRequest,
        deadline: float | None,
        attempt: Attempt[T],
        discard: Callable[[T], Awaitable[None]],
        *,
        stream: bool,
    ) -> T:
        """Pick a deployment and try it (hedged when the group hedges); on a retryable
        error try another at once, or back off, within the budget and the deadline."""
        tokens = estimate_tokens(request)
        tried: set[str] = set()
        retries = 0
        hedging = self.hedging
        backup = (
            self._backup(attempt, request, deadline, tokens, tried) if self.settings.hedge else _no_backup
        )
        while True:
            member = self.choose(request, tried, tokens)
            tried.add(member.name)
            try:
                return await hedging.run(attempt(member, request, deadline, tokens), stream, backup, discard)
            except ThriftyError as exc:
                if not await self._may_retry(exc, retries, tried, request, deadline):
                    raise
                retries += 1
                self.retries += 1

    async def _call(
        self, member: Member, request: ChatRequest, deadline: float | None, tokens: int
    ) -> ChatResponse:
        """One attempt at a whole answer."""
        timeout = self._attempt_timeout(member, deadline)
        member.on_send(tokens)
        request.trace.attempts += 1
        started = self.clock.now()
        timer = Timer(timeout)
        try:
            response = await timer.run(member.backend.complete(request))
        except TimeoutError:
            error = _timeout_error(member, timeout, f"did not answer within {timeout:g}s")
            member.on_error(error)
            raise error from None
        except asyncio.CancelledError:
            member.on_cancel()
            raise
        except Exception as exc:
            member.on_error(exc)
            raise
        finally:
            timer.close()
            member.on_done()
        latency = self.clock.now() - started
        member.on_success(latency, response.usage.completion_tokens)
        self.latencies.add(latency)
        request.trace.deployment = member.name
        return response

    async def _open(
        self, member: Member, request: ChatRequest, deadline: float | None, tokens: int
    ) -> tuple[Stream, Piece]:
        """One attempt at a stream: the stream and its first chunk (closed again on failure)."""
        stream = self._attempt_stream(member, request, deadline, tokens)
        try:
            return stream, await anext(stream)
        except BaseException:
            await stream.aclose()
            raise

    # -- hedging -----------------------------------------------------------

    @property
    def hedge_wins(self) -> int:
        """Answers a hedged second attempt won."""
        return self.hedging.wins

    def hedge_delay(self, stream: bool = False) -> float:
        """The group's recent p95: the median over deployments of each one's p95.

        Of whole answers for ``complete``, of the first chunk for streams. The
        median keeps one slow deployment from raising the bar it is hedged
        against; until there are enough samples, ``hedge_delay`` from config.
        """
        q, enough = self.settings.hedge_quantile, self.settings.hedge_min_samples
        windows = [m.first_chunks if stream else m.latencies for m in self.members]
        per_member = sorted(w.quantile(q) or 0.0 for w in windows if len(w) >= enough)
        if per_member:
            return per_member[(len(per_member) - 1) // 2]
        group = self.first_chunks if stream else self.latencies
        if len(group) >= enough:
            return group.quantile(q) or self.settings.hedge_delay
        return self.settings.hedge_delay

    def _backup(
        self, attempt: Attempt[T], request: ChatRequest, deadline: float | None, tokens: int, tried: set[str]
    ) -> Callable[[], Awaitable[T] | None]:
        """Start a hedge: the same attempt on a deployment not tried yet (None when there is none)."""

        def backup() -> Awaitable[T] | None:
            other = self._hedge_target(request, tried, tokens)
            return None if other is None else attempt(other, request, deadline, tokens)

        return backup

    def _hedge_target(self, request: ChatRequest, tried: set[str], tokens: int) -> Member | None:
        try:
            other = self.choose(request, tried, tokens)
        except ThriftyError:
            return None
        if other.name in tried:
            return None
        tried.add(other.name)
        self.hedges += 1
        request.trace.hedged = other.name
        return other

    # -- stream attempts ---------------------------------------------------

    async def _attempt_stream(
        self, member: Member, request: ChatRequest, deadline: float | None, tokens: int
    ) -> Stream:
        total = self._attempt_timeout(member, deadline)
        first_token = member.deployment.first_token_timeout or self.settings.first_token_timeout
        member.on_send(tokens)
        request.trace.attempts += 1
        started = self.clock.now()
        inner = member.backend.stream(request)
        # One timer for the whole attempt: the first-token limit, then the rest of the total.
        waiting_first = first_token is not None and first_token < total
        timer = Timer(first_token if waiting_first and first_token is not None else total)
        first_seen = False
        try:
            while True:
                try:
                    chunk = await timer.run(anext(inner))
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    if not first_seen and waiting_first:
                        raise UpstreamTimeout(f"{member.name} exceeded its first-token timeout") from None
                    raise _timeout_error(member, total, f"exceeded its total timeout ({total:g}s)") from None
                if not first_seen:
                    first_seen = True
                    took = self.clock.now() - started
                    if waiting_first:
                        timer.move(max(total - took, 0.0))
                    member.ewma.add(took)
                    member.first_chunks.add(took)
                    self.first_chunks.add(took)
                    request.trace.deployment = member.name
                if member.deployment.tpm is not None and not isinstance(chunk, RawEvents):
                    usage = chunk.get("usage")
                    if usage:
                        member.tpm.add(int(usage.get("completion_tokens") or 0))
                yield chunk
        except (asyncio.CancelledError, GeneratorExit):
            member.on_cancel()
            raise
        except Exception as exc:
            member.on_error(exc)
            raise
        else:
            member.served += 1
            member.breaker.on_success()
        finally:
            timer.close()
            member.on_done()
            closer = getattr(inner, "aclose", None)
            if closer is not None:
                await closer()

    # -- introspection -----------------------------------------------------

    def upstream_counts(self) -> GroupCounts:
        """Each deployment's state and counts now (read by the observer, off the hot path)."""
        return GroupCounts(
            self.name,
            self.retries,
            self.hedges,
            self.hedge_wins,
            tuple(
                DeploymentCounts(
                    m.name,
                    m.healthy,
                    m.breaker.state,
                    m.breaker.times_opened,
                    m.sent,
                    dict(m.errors),
                )
                for m in self.members
            ),
        )

    def upstream_changes(self) -> list[Change]:
        """The breaker and health changes since the last call (taken: each is seen once)."""
        out = []
        changes = self.changes
        while changes:
            out.append(changes.popleft())
        return out

    def status(self) -> dict[str, Any]:
        """State for /metrics and the admin endpoint."""
        return {
            "group": self.name,
            "strategy": self.settings.strategy,
            "in_flight": self.gate.active,
            "queued": self.gate.queued,
            "rejected": self.gate.rejected,
            "retry_budget_denied": self.budget.denied,
            "hedges": self.hedges,
            "hedge_wins": self.hedge_wins,
            "hedge_delay_ms": round(self.hedge_delay() * 1000, 2) if self.settings.hedge else None,
            "stream_hedge_delay_ms": round(self.hedge_delay(True) * 1000, 2) if self.settings.hedge else None,
            "deployments": {m.name: m.status() for m in self.members},
            "health": self.health.status(),
        }


def _timeout_error(member: Member, timeout: float, what: str) -> ThriftyError:
    """The deployment's own timeout is its fault; a shorter request deadline is not."""
    if timeout < member.deployment.timeout:
        return RequestTimeout(f"the request's deadline ran out: {member.name} {what}", param="timeout")
    return UpstreamTimeout(f"{member.name} {what}")


def request_timeout(request: ChatRequest) -> float | None:
    """The per-request ``timeout`` option in seconds (number or numeric header string)."""
    return requested_timeout(request.options)


def _group_concurrency(settings: BalanceSettings, members: Sequence[Member]) -> int | None:
    if settings.max_concurrency is not None:
        return settings.max_concurrency
    limits = [m.deployment.max_concurrency for m in members]
    if settings.max_queue is not None and all(limit is not None for limit in limits):
        return sum(limit for limit in limits if limit is not None)
    return None
