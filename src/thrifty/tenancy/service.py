"""Tenancy at request time: who is calling, what they may spend, and settling up.

    principal = await tenancy.identify(secret)          # None: not a virtual key
    ticket = await tenancy.admit(principal, request)    # 429 / 404 before any money is spent
    ...call the model...
    tenancy.settle(ticket, usage, cost_usd)             # reservation -> real spend (no I/O)

Keys are looked up in the database at most once per ``cache_ttl`` per replica
(so a revoked key stops working everywhere within that time); counters live in
Redis when configured (:mod:`.counters`). Spend is added to the database by a
background thread in batches, never on the request path, and drained on close.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..errors import NotFound, RateLimited, StorageUnavailable, ThriftyError
from .counters import Check, LocalCounters, RedisCounters, Verdict
from .policy import Policy, period_window
from .store import KeyRecord, KeyStore, Team, hash_secret

log = logging.getLogger("thrifty.tenancy")
DAY = 86400.0
MAX_HOLD = 900.0  # a parallel slot is freed after this even if its replica died


class BudgetExceeded(RateLimited):
    code = "budget_exceeded"


@dataclass(frozen=True)
class Principal:
    """A virtual key with its team, as one request sees them."""

    key: KeyRecord
    team: Team | None
    seeds: dict[str, float]  # budget scope -> spend already in the database this period
    # ``(scope, label, policy)`` for the key and, if any, its team
    scopes: tuple[tuple[str, str, Policy], ...] = ()
    # the checks of every request, worked out once per key: ``(kind, name, limit, scope)``
    # (kind "rpm", "tpm", "par" or a budget period; a budget's name still lacks its period start)
    plan: tuple[tuple[str, str, float, str], ...] = ()
    headers: tuple[tuple[int, str, str], ...] = ()  # (check index, unit, limit) for x-ratelimit-*

    def __post_init__(self) -> None:
        scopes = [(f"key:{self.key.id}", f"key '{self.key.name}'", self.key.policy)]
        if self.team is not None:
            scopes.append((f"team:{self.team.name}", f"team '{self.team.name}'", self.team.policy))
        plan: list[tuple[str, str, float, str]] = []
        headers: list[tuple[int, str, str]] = []
        for scope, _, policy in scopes:
            limits = policy.limits
            for kind, limit, unit in (("rpm", limits.rpm, "requests"), ("tpm", limits.tpm, "tokens")):
                if limit is not None:
                    if scope.startswith("key:"):  # OpenAI's headers tell the key's own limits
                        headers.append((len(plan), unit, f"{limit:g}"))
                    plan.append((kind, f"{kind}:{scope}", limit, scope))
            if limits.parallel is not None:
                plan.append(("par", f"par:{scope}", limits.parallel, scope))
            if policy.budget is not None:
                plan.append((policy.budget.period, f"usd:{scope}:", policy.budget.usd, scope))
        object.__setattr__(self, "scopes", tuple(scopes))
        object.__setattr__(self, "plan", tuple(plan))
        object.__setattr__(self, "headers", tuple(headers))


@dataclass
class Ticket:
    """What one admitted request reserved, to be settled when it ends."""

    principal: Principal
    request_id: str
    admitted_at: float
    reserved_usd: float
    reserved_tokens: int
    checks: list[Check] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class Tenancy:
    def __init__(
        self,
        store: KeyStore,
        counters: LocalCounters | RedisCounters,
        *,
        max_price: Callable[[str], tuple[float, float]],
        max_output: Callable[[str], int],
        cache_ttl: float = 0.4,
        soft_alert: float = 0.8,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.counters = counters
        self.max_price = max_price  # model name -> worst (input, output) USD per token
        self.max_output = max_output  # model name -> output tokens when max_tokens is absent
        self.cache_ttl = cache_ttl
        self.soft_alert = soft_alert
        self.clock = clock
        self.refused: dict[str, int] = {}
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._loading: dict[str, asyncio.Future[Principal | None]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-tenancy")
        self._pending: dict[tuple[str, float], list[float]] = {}
        self._lock = threading.Lock()
        self._alerted: set[str] = set()
        self._windows: dict[str, tuple[float, float]] = {}  # budget period -> current (start, end)
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None  # started by the first settlement

    # -- who ----------------------------------------------------------------------

    async def identify(self, secret: str) -> Principal | None:
        """The principal for a secret, or None when it is no virtual key at all.

        Raises 401 for a revoked or expired key.
        """
        digest = hash_secret(secret)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit is not None and hit[0] > now:
            principal = hit[1]
        else:
            # One load per key at a time, however many requests wait for it; a copy that
            # expired less than one ttl ago answers meanwhile (so a change is seen within
            # two ttls) instead of every request queueing behind the database.
            loading = self._loading.get(digest)
            if loading is None:
                loading = self._loading[digest] = asyncio.ensure_future(self._reload(digest, secret))
                loading.add_done_callback(_retrieved)  # a failure nobody awaited is still seen here
            if hit is not None and hit[0] + self.cache_ttl > now:
                principal = hit[1]
            else:
                principal = await asyncio.shield(loading)
        if principal is not None and not principal.key.usable(self.clock()):
            from ..errors import AuthenticationError

            state = "revoked" if principal.key.revoked_at is not None else "expired"
            raise AuthenticationError(f"This API key was {state}.", code=f"key_{state}")
        return principal

    async def _reload(self, digest: str, secret: str) -> Principal | None:
        try:
            principal = await asyncio.get_running_loop().run_in_executor(self._pool, self._load, secret)
        except ThriftyError:
            raise
        except Exception as exc:  # the key database is away: only virtual keys are affected
            from ..storage import cause

            log.warning("tenancy: cannot read keys (%s)", exc)
            raise StorageUnavailable(
                f"Virtual keys cannot be checked now ({cause(exc)}); try again shortly."
            ) from None
        finally:
            self._loading.pop(digest, None)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[digest] = (time.monotonic() + self.cache_ttl, principal)
        return principal

    def _load(self, secret: str) -> Principal | None:
        record = self.store.find(secret)
        if record is None:
            return None
        team = self.store.get_team(record.team, missing_ok=True) if record.team else None
        principal = Principal(record, team, {})
        now = self.clock()
        for scope, _, policy in principal.scopes:
            if policy.budget is not None:
                start, end = policy.budget.window(now)
                principal.seeds[scope] = self.store.spent(scope, start, end) + self._unflushed(scope, start)
        return principal

    def forget(self) -> None:
        """Drop cached keys (after a change made through this replica)."""
        self._cache.clear()

    # -- before ------------------------------------------------------------------

    async def admit(
        self,
        principal: Principal,
        model: str,
        prompt_tokens: int,
        max_tokens: int | None,
        request_id: str,
        choices: int = 1,
    ) -> Ticket:
        """Reserve the worst case: the prompt plus ``choices`` answers of ``max_tokens`` each."""
        for _, label, policy in principal.scopes:
            if not policy.allows(model):
                self._count("model")
                raise NotFound(
                    f"The model '{model}' is not available to {label}; allowed: {', '.join(policy.models)}.",
                    param="model",
                    code="model_not_found",
                )
        output = (max_tokens if max_tokens is not None else self.max_output(model)) * max(1, choices)
        price_in, price_out = self.max_price(model)
        cost = prompt_tokens * price_in + output * price_out
        tokens = prompt_tokens + output
        now = self.clock()
        checks: list[Check] = []
        budgets = False
        for kind, name, limit, scope in principal.plan:
            if kind == "rpm":
                checks.append(Check("rate", name, limit, 1, 60.0))
            elif kind == "tpm":
                checks.append(Check("rate", name, limit, tokens, 60.0))
            elif kind == "par":
                checks.append(Check("parallel", name, limit, 1, MAX_HOLD))
            else:  # a budget, named by its period's start
                budgets = True
                start, end = self._window(kind, now)
                left = end - now if math.isfinite(end) else math.inf
                seed = principal.seeds.get(scope, 0.0)
                checks.append(Check("budget", f"{name}{int(start)}", limit, cost, left, seed))
        verdict = await self.counters.admit(checks, request_id)
        if not verdict.admitted:
            raise self._refusal(principal, verdict, cost)
        ticket = Ticket(principal, request_id, now, cost, tokens, checks)
        if principal.headers and verdict.remaining:
            ticket.headers = self._headers(principal, verdict)
        if budgets:
            self._soft_alerts(principal, checks, verdict)
        return ticket

    def _window(self, period: str, now: float) -> tuple[float, float]:
        """The budget period around ``now``, computed once per period, not per request."""
        window = self._windows.get(period)
        if window is None or not window[0] <= now < window[1]:
            window = self._windows[period] = period_window(period, now)
        return window

    def _refusal(self, principal: Principal, verdict: Verdict, cost: float) -> RateLimited:
        check = verdict.failed
        assert check is not None
        scope = check.name.split(":", 1)[1]
        label = next((lbl for s, lbl, _ in principal.scopes if scope.startswith(s)), scope)
        if check.kind == "budget":
            self._count("budget")
            policy = next(p for s, _, p in principal.scopes if scope.startswith(s))
            assert policy.budget is not None
            _, end = policy.budget.window(self.clock())
            when = (
                "It never resets (a total budget)."
                if not math.isfinite(end)
                else f"It resets at {dt.datetime.fromtimestamp(end, dt.UTC):%Y-%m-%d %H:%M} UTC."
            )
            return BudgetExceeded(
                f"The budget of ${policy.budget.usd:g} per {policy.budget.period} for {label} cannot cover "
                f"this request (it may cost up to ${cost:.4f}); ask for fewer max_tokens or wait. {when}",
                retry_after=None if not math.isfinite(end) else verdict.retry_after,
            )
        what = {
            "rate": "requests" if check.name.startswith("rpm") else "tokens",
            "parallel": "requests in flight",
        }
        self._count(check.kind)
        unit = what[check.kind]
        if check.kind == "parallel":
            message = f"Too many requests in flight for {label}: the limit is {check.limit:g}."
        else:
            message = (
                f"Rate limit reached for {label}: {check.limit:g} {unit} per minute. "
                f"Try again in {max(1, math.ceil(verdict.retry_after))} s."
            )
        return RateLimited(message, retry_after=verdict.retry_after)

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    @staticmethod
    def _headers(principal: Principal, verdict: Verdict) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers, from the key's own limits."""
        headers: dict[str, str] = {}
        remaining = verdict.remaining
        for index, unit, limit in principal.headers:
            headers[f"x-ratelimit-limit-{unit}"] = limit
            headers[f"x-ratelimit-remaining-{unit}"] = str(max(0, math.floor(remaining[index])))
        return headers

    def _soft_alerts(self, principal: Principal, checks: Sequence[Check], verdict: Verdict) -> None:
        for check, left in zip(checks, verdict.remaining, strict=False):
            if check.kind == "budget" and check.limit > 0 and check.name not in self._alerted:
                used = check.limit - left
                if used >= self.soft_alert * check.limit:
                    self._alerted.add(check.name)
                    log.warning(
                        "tenancy: %s has used %.0f%% of its budget ($%.4f of $%g)",
                        check.name.split(":", 1)[1],
                        100 * used / check.limit,
                        used,
                        check.limit,
                    )

    # -- after ---------------------------------------------------------------------

    def settle(self, ticket: Ticket, tokens: int, cost_usd: float) -> None:
        """Replace the reservation by what the request really used (once)."""
        if ticket.settled:
            return
        ticket.settled = True
        corrections: list[tuple[Check, float]] = []
        for check in ticket.checks:
            if check.kind == "budget":
                corrections.append((check, cost_usd - ticket.reserved_usd))
            elif check.name.startswith("tpm"):
                corrections.append((check, tokens - ticket.reserved_tokens))
            elif check.kind == "parallel":
                corrections.append((check, 0.0))
        self.counters.settle(corrections, ticket.request_id, ticket.admitted_at)
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="thrifty-spend", daemon=True)
            self._flusher.start()
        if cost_usd > 0 or ticket.checks:
            day = math.floor(self.clock() / DAY) * DAY
            with self._lock:
                for scope, _, _ in ticket.principal.scopes:
                    entry = self._pending.setdefault((scope, day), [0.0, 0])
                    entry[0] += cost_usd
                    entry[1] += 1

    def _unflushed(self, scope: str, start: float) -> float:
        with self._lock:
            return sum(v[0] for (s, day), v in self._pending.items() if s == scope and day >= start)

    def _flush_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows = [(scope, day, usd, int(n)) for (scope, day), (usd, n) in self._pending.items()]
            self._pending.clear()
        if not rows:
            return
        try:
            self.store.add_spend(rows)
        except Exception as exc:  # the database is away: keep the rows for the next try
            log.warning("tenancy: could not record spend (%s); will retry", exc)
            with self._lock:
                for scope, day, usd, n in rows:
                    entry = self._pending.setdefault((scope, day), [0.0, 0])
                    entry[0] += usd
                    entry[1] += n

    async def aclose(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            await asyncio.to_thread(self._flusher.join)
        self.flush()
        if isinstance(self.counters, RedisCounters):
            await self.counters.aclose()
        self._pool.shutdown(wait=True)
        self.store.close()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def estimate_prompt_tokens(messages: Sequence[Any]) -> int:
    """A cautious count for reservations only (billing uses the upstream's usage): 1 token per 3 bytes."""
    import orjson

    return len(orjson.dumps(messages)) // 3 + 8


__all__ = ["BudgetExceeded", "Principal", "Tenancy", "Ticket", "estimate_prompt_tokens"]
