"""Routing policies: what the router asks to pick a tier and to serve the request there.

Every policy (:class:`Policy`) looks at a request and the router's candidate
tiers and returns a :class:`Pick` (which tier, a score, the features behind
it), then serves the request from that tier. The pick-one policies here, rules
(complexity score) and learned (fitted file), serve from the picked tier alone
(:class:`PickOne`); the cascade (:mod:`thrifty.routing.cascade`) starts at the
cheapest and escalates.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..backend import Backend
from ..types import ChatRequest, ChatResponse, Piece, RawEvents, RouteDecision, Usage
from . import features as F
from .learned import LearnedModel, choose, load
from .settings import RouterSpec, Tier
from .vectors import Embed, Featurizer


class RouterUnavailable(Exception):
    """The policy cannot decide (missing fitted file, embedding error)."""


@dataclass(slots=True)
class Pick:
    index: int  # into the candidate tiers
    score: float | None
    features: dict[str, float] = field(default_factory=dict)


class Policy(Protocol):
    name: str
    blocking: bool  # decide() does CPU work (embedding): the router runs it in a worker thread

    def decide(self, text: str, params: Mapping[str, Any], tiers: Sequence[Tier]) -> Pick: ...

    async def complete(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: RouteDecision
    ) -> ChatResponse: ...

    def stream(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: RouteDecision
    ) -> AsyncIterator[Piece]: ...


class PickOne:
    """Serving for the pick-one policies: the picked tier answers; its cost goes on the decision."""

    blocking = False

    def __init__(self, backends: Mapping[str, Backend] | None) -> None:
        self.backends = backends or {}

    async def complete(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: RouteDecision
    ) -> ChatResponse:
        tier = tiers[start]
        response = await self.backends[tier.name].complete(request.with_model(tier.group))
        decision.cost_usd = tier.cost(response.usage.prompt_tokens, response.usage.completion_tokens)
        return response

    async def stream(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: RouteDecision
    ) -> AsyncIterator[Piece]:
        tier = tiers[start]
        async for chunk in self.backends[tier.name].stream(request.with_model(tier.group)):
            if not isinstance(chunk, RawEvents) and chunk.get("usage"):
                usage = Usage.from_json(chunk["usage"])
                decision.cost_usd = tier.cost(usage.prompt_tokens, usage.completion_tokens)
            yield chunk


class RulesPolicy(PickOne):
    """Complexity score from hand-written features, mapped to a tier by thresholds."""

    name = "rules"

    def __init__(self, spec: RouterSpec, backends: Mapping[str, Backend] | None = None) -> None:
        super().__init__(backends)
        self.thresholds = spec.thresholds

    def decide(self, text: str, params: Mapping[str, Any], tiers: Sequence[Tier]) -> Pick:
        feats = F.extract(text, params)
        score = F.complexity(feats)
        index = min(F.tier_index(score, self.thresholds), len(tiers) - 1)
        return Pick(index=index, score=score, features=feats)


class LearnedPolicy(PickOne):
    """Per-tier quality predicted by a fitted router file, loaded on first use."""

    name = "learned"
    blocking = True

    def __init__(
        self, spec: RouterSpec, embed: Embed | None = None, backends: Mapping[str, Backend] | None = None
    ) -> None:
        super().__init__(backends)
        self.path = spec.model_file
        self.quality_target = spec.quality_target
        self.cost_weight = spec.cost_weight
        self.embed = embed  # the stack's embedding model; None: the featurizer loads its own
        self._model: LearnedModel | None = None
        self._featurizer: Featurizer | None = None
        self._lock = threading.Lock()

    def model(self) -> LearnedModel:
        if self.path is None:
            raise RouterUnavailable("no model_file configured for the learned policy")
        with self._lock:
            if self._model is None:
                try:
                    model = load(self.path)
                except ValueError as exc:
                    raise RouterUnavailable(str(exc)) from exc
                self._featurizer = model.featurizer(self.embed)
                self._model = model
            return self._model

    def decide(self, text: str, params: Mapping[str, Any], tiers: Sequence[Tier]) -> Pick:
        model = self.model()
        columns = []
        for tier in tiers:
            name = tier.name if tier.name in model.models else tier.group
            if name not in model.models:
                raise RouterUnavailable(
                    f"fitted router knows {', '.join(model.models)}; no entry for tier {tier.name!r}"
                )
            columns.append(model.models.index(name))
        try:
            quality = model.predict_texts([text], self._featurizer)[0]
        except RouterUnavailable:
            raise
        except Exception as exc:  # embedding backend missing or broken: fall back, never fail
            raise RouterUnavailable(f"featurizer {model.featurizer_name!r} failed: {exc}") from exc
        q = [float(quality[c]) for c in columns]
        costs = [_unit_price(t) + i * 1e-12 for i, t in enumerate(tiers)]
        index = choose(q, costs, **self.rule(model))
        feats = {f"p_{t.name}": v for t, v in zip(tiers, q, strict=True)}
        return Pick(index=index, score=q[index], features=feats)

    def rule(self, model: LearnedModel) -> dict[str, float | None]:
        """The configured rule; else the cost weight the file's cross-validation chose; else target 0.7."""
        if self.cost_weight is not None:
            return {"cost_weight": self.cost_weight}
        if self.quality_target is not None:
            return {"quality_target": self.quality_target}
        if model.cost_weight is not None:
            return {"cost_weight": model.cost_weight}
        return {"quality_target": 0.7}


def _unit_price(tier: Tier) -> float:
    """A single price to compare tiers: a typical call of 3 input tokens per output token."""
    return 3 * tier.input_price + tier.output_price
