"""The router backend: one routed model name over several tier backends.

Per request it picks a policy (the configured one, or the client's override in
``request.options["route"]`` / ``x-thrifty-route-policy``), lets it choose a
start tier, lets the feedback learner move the start tier when enabled, lets
the policy serve the request from there (the picked tier alone, or up the
cascade) and records the decision: the
``x-thrifty-route`` header, the ledger's decision object, per-tier counters.
If the policy itself fails (fitted file missing or corrupt, embedding error)
the request goes to the router's default tier instead and says so in
``x-thrifty-route-fallback``; the request never fails because of the router.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..backend import Backend, Choice
from ..errors import InvalidRequest, ThriftyError
from ..types import ChatRequest, ChatResponse, Piece
from . import features as F
from .cascade import Cascade
from .decision import Decision
from .feedback import FeedbackLearner
from .policies import LearnedPolicy, Policy, RulesPolicy
from .settings import POLICIES, RouterSpec, Tier
from .vectors import Embed
from .verify import Verifier

log = logging.getLogger("thrifty.routing")
KEEP_DECISIONS = 2_000


class Router(Choice):
    """A :class:`~thrifty.backend.Choice` over the candidate tiers' backends."""

    def __init__(
        self,
        spec: RouterSpec,
        tiers: Sequence[Tier],
        backends: Mapping[str, Backend],
        verifier: Verifier,
        learner: FeedbackLearner | None = None,
        embed: Embed | None = None,
        priced: Mapping[str, Tier] | None = None,
    ) -> None:
        super().__init__(spec.name, [backends[t.name] for t in tiers])
        self.spec = spec
        self.tiers = list(tiers)
        self.tier_backends = dict(backends)
        self.learner = learner
        self.verifier = verifier
        self.policies: dict[str, Policy] = {
            "rules": RulesPolicy(spec, self.tier_backends),
            "learned": LearnedPolicy(spec, embed, self.tier_backends),
            "cascade": Cascade(spec, self.tier_backends, verifier, priced),
        }
        self.counts: Counter[str] = Counter()
        self.cost_usd: dict[str, float] = {}
        self._decisions: OrderedDict[str, Decision] = OrderedDict()
        self._logged: set[str] = set()

    # -- public API -------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        decision, tiers, start = await self._route(request)
        try:
            response = await self.policies[decision.policy].complete(request, tiers, start, decision)
        except ThriftyError:
            self._failed(decision)
            raise
        self._finish(request, decision)
        return response

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        return self._stream(request)

    def on_feedback(self, request_id: str, rating: int) -> None:
        """A 1-5 rating from the feedback API; ignored unless this router served the request."""
        if request_id not in self._decisions:
            return
        self.counts["feedback"] += 1
        if self.learner is not None:
            self.learner.rate(request_id, rating)

    def decision_for(self, request_id: str) -> Decision | None:
        """The decision taken for a recent request, for the ledger."""
        return self._decisions.get(request_id)

    def status(self) -> dict[str, Any]:
        """Plain counters for /metrics: requests and cost by tier, escalations, fallbacks."""
        return {
            "router": self.name,
            "requests_by_tier": {t.name: self.counts[f"tier:{t.name}"] for t in self.tiers},
            "requests_by_policy": {p: self.counts[f"policy:{p}"] for p in POLICIES},
            "cost_usd_by_tier": {t.name: round(self.cost_usd.get(t.name, 0.0), 8) for t in self.tiers},
            "escalations": self.counts["escalations"],
            "fallbacks": self.counts["fallbacks"],
            "failures": self.counts["failures"],
            "feedback": self.counts["feedback"],
        }

    # -- routing ----------------------------------------------------------------------

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        decision, tiers, start = await self._route(request)
        try:
            first = True
            async for chunk in self.policies[decision.policy].stream(request, tiers, start, decision):
                if first:  # headers go out with the first chunk: the route is known by now
                    request.trace.route = decision
                    first = False
                yield chunk
        except ThriftyError:
            self._failed(decision)
            raise
        self._finish(request, decision)

    async def _route(self, request: ChatRequest) -> tuple[Decision, list[Tier], int]:
        policy, forced = self._override(request)
        needs = F.needs(request.messages, request.params)
        tiers = [t for t in self.tiers if t.supports(needs)] or self.tiers
        text = F.prompt_text(request.messages)
        feats = F.extract(text, request.params)
        decision = Decision(
            router=self.name, policy=policy, tier="", model="", features=feats, kind=F.request_kind(feats)
        )
        if forced is not None:
            start = (
                next(i for i, t in enumerate(tiers) if t.name == forced)
                if any(t.name == forced for t in tiers)
                else len(tiers) - 1
            )
        else:
            chooser = self.policies[policy]
            if policy == "cascade" and self.spec.start != "first":
                chooser = self.policies[self.spec.start]  # a router picks where the cascade starts
            start = await self._pick(chooser, text, request, tiers, decision)
        if self.learner is not None and forced is None and decision.fallback is None:
            start = self.learner.start(decision.kind, [t.name for t in tiers], start)
        decision.tier, decision.model = tiers[start].name, tiers[start].group
        return decision, tiers, start

    async def _pick(
        self, policy: Policy, text: str, request: ChatRequest, tiers: list[Tier], decision: Decision
    ) -> int:
        try:
            if policy.blocking:
                pick = await asyncio.to_thread(policy.decide, text, request.params, tiers)
            else:
                pick = policy.decide(text, request.params, tiers)
        except Exception as exc:  # any policy failure routes to the default; never fails the request
            reason = f"{policy.name} policy unavailable: {exc}"
            self._fallback(request, decision, reason)
            names = [t.name for t in tiers]
            return names.index(self.spec.default) if self.spec.default in names else len(tiers) - 1
        decision.score = pick.score
        decision.features.update(pick.features)
        return pick.index

    def _override(self, request: ChatRequest) -> tuple[str, str | None]:
        raw = request.options.get("route")
        policy: Any = self.spec.policy
        forced: Any = None
        if isinstance(raw, str):
            if raw in POLICIES:
                policy = raw
            elif raw in self.spec.candidates:
                forced = raw
            else:
                raise InvalidRequest(
                    f"route {raw!r} is neither a policy ({', '.join(POLICIES)}) nor a tier of "
                    f"{self.name} ({', '.join(self.spec.candidates)})",
                    param="route",
                )
        elif isinstance(raw, dict):
            unknown = set(raw) - {"policy", "tier"}
            if unknown:
                raise InvalidRequest(
                    f"route: unknown option {sorted(unknown)[0]!r}; use policy or tier", param="route"
                )
            policy = raw.get("policy", policy)
            forced = raw.get("tier")
        elif raw is not None:
            raise InvalidRequest("route must be a policy name or an object {policy, tier}", param="route")
        header = request.options.get("route-policy")
        if header is not None:
            policy = header
        if policy not in POLICIES:
            param = "route-policy" if header is not None else "route"
            raise InvalidRequest(
                f"unknown routing policy {policy!r}; expected one of {', '.join(POLICIES)}", param=param
            )
        if policy == "learned" and self.spec.model_file is None:
            raise InvalidRequest(
                f"router {self.name} has no fitted model for the learned policy", param="route"
            )
        if forced is not None and forced not in self.spec.candidates:
            raise InvalidRequest(f"route tier {forced!r} is not a candidate of {self.name}", param="route")
        return str(policy), forced

    # -- bookkeeping ------------------------------------------------------------------

    def _fallback(self, request: ChatRequest, decision: Decision, reason: str) -> None:
        decision.fallback = reason
        self.counts["fallbacks"] += 1
        request.trace.route_fallback = reason
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("router %s falls back to %s: %s", self.name, self.spec.default, reason)

    def _failed(self, decision: Decision) -> None:
        self.counts["failures"] += 1
        if self.learner is not None and decision.tier:
            self.learner.record(decision.kind, decision.tier, 0.0)

    def _finish(self, request: ChatRequest, decision: Decision) -> None:
        request.trace.route = decision
        self.counts[f"tier:{decision.tier}"] += 1
        self.counts[f"policy:{decision.policy}"] += 1
        self.counts["escalations"] += decision.escalations
        self.cost_usd[decision.tier] = self.cost_usd.get(decision.tier, 0.0) + decision.cost_usd
        rid = request.trace.request_id
        self._decisions[rid] = decision
        while len(self._decisions) > KEEP_DECISIONS:
            self._decisions.popitem(last=False)
        if self.learner is not None:
            for escalated in decision.tried[: decision.escalations]:
                self.learner.record(decision.kind, escalated, 0.0)
            self.learner.remember(rid, decision.kind, decision.tier)
