"""The cascade: call the cheapest tier, score its answer, escalate while it is weak.

Each tier but the last is asked for token log-probabilities (``logprobs=True``)
so the default verifier can score confidence; they are removed again before
the answer reaches a client that did not ask for them. Escalation stops at the
last candidate, after ``max_escalations``, or when the next call would exceed
the per-request ``budget_usd``, in which case the best answer so far is kept.

Streaming: a tier that may still be escalated from is *buffered* — its chunks
are collected, the answer scored, and only if accepted are the chunks replayed
to the client. An escalated answer is never shown. The last tier streams live.
So a streaming client sees exactly one answer, and when an escalation happens
its first token arrives only after the cheaper tier has finished.

Every upstream call is paid and accounted: the decision's ``cost_usd`` holds
the answers, the escalated answers and the verifier's calls; the escalated
answers and the verifier's calls go on the trace (``trace.calls``), one ledger
row each. ``decision.verdicts`` keeps each judged tier's verdict (accepted or
not), the outcome ``thrifty route fit --ledger`` learns from.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..backend import Backend
from ..errors import ThriftyError
from ..types import (
    CacheOutcome,
    ChatRequest,
    ChatResponse,
    Chunk,
    Piece,
    RawEvents,
    UpstreamCall,
    Usage,
    completion_body,
    parsed,
)
from .decision import Decision
from .policies import Pick
from .settings import RouterSpec, Tier
from .verify import Verifier


class Cascade:
    """The ``cascade`` routing policy: start at the cheapest tier, escalate while the answer is weak.

    Like every policy it picks a start tier (:meth:`decide`: the first); unlike
    the pick-one policies it also serves the request itself, up the tiers
    (:meth:`complete`, :meth:`stream`). Built once per router.
    """

    name = "cascade"
    blocking = False

    def __init__(
        self,
        spec: RouterSpec,
        backends: Mapping[str, Backend],
        verifier: Verifier,
        priced: Mapping[str, Tier] | None = None,
    ) -> None:
        self.spec = spec
        self.backends = backends
        self.verifier = verifier
        self.priced = dict(priced or {})  # model group -> tier: prices the verifier's calls to other tiers

    def decide(self, text: str, params: Mapping[str, Any], tiers: Sequence[Tier]) -> Pick:
        return Pick(index=0, score=None)

    def _plan(self, tiers: Sequence[Tier], start: int) -> list[Tier]:
        return list(tiers[start : start + self.spec.max_escalations + 1])

    def _over_budget(self, decision: Decision, tier: Tier, usage: Usage) -> bool:
        if self.spec.budget_usd is None:
            return False
        estimate = tier.cost(usage.prompt_tokens, max(usage.completion_tokens, 1))
        return decision.cost_usd + estimate > self.spec.budget_usd

    async def complete(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: Decision
    ) -> ChatResponse:
        plan = self._plan(tiers, start)
        best: tuple[float, ChatResponse, UpstreamCall] | None = None
        answers: list[UpstreamCall] = []  # every tier's answer, as a call: the unserved ones are ledgered
        for i, tier in enumerate(plan):
            last = i == len(plan) - 1
            if best is not None and self._over_budget(decision, tier, best[1].usage):
                break
            decision.tried.append(tier.name)
            asked = self._ask(request, tier, last)
            started, cached = time.perf_counter(), request.trace.cache
            request.trace.deployment = ""  # set again by whatever answers this tier
            try:
                response = await self.backends[tier.name].complete(asked)
            except ThriftyError:
                if last:
                    request.trace.calls.extend(answers)  # paid for, though the request fails
                    raise
                decision.escalations += 1
                continue
            answer = _answer(request, tier, response, started, cached)
            answers.append(answer)
            decision.cost_usd += tier.cost(response.usage.prompt_tokens, response.usage.completion_tokens)
            if last:
                best = (-1.0, response, answer)
                break
            score = await self._score(asked, response, tier, decision)
            decision.score = score  # the last verdict: the accepted score, or why we escalated
            if best is None or score >= best[0]:
                best = (score, response, answer)
            if score >= self.spec.accept.get(tier.name, 0.5):
                break
            decision.escalations += 1
        assert best is not None  # the loop either answered or raised on the last tier
        _, response, served = best
        decision.tier, decision.model = served.tier, served.model
        request.trace.deployment = served.deployment  # the ledger row prices the answer served
        request.trace.calls.extend(a for a in answers if a is not served)
        _strip_logprobs(request, response.body)
        return response

    async def stream(
        self, request: ChatRequest, tiers: Sequence[Tier], start: int, decision: Decision
    ) -> AsyncIterator[Piece]:
        """Buffer each tier that may be escalated from; stream the last live."""
        plan = self._plan(tiers, start)
        for i, tier in enumerate(plan):
            last = i == len(plan) - 1
            decision.tried.append(tier.name)
            decision.tier, decision.model = tier.name, tier.group
            if last:
                async for chunk in self.backends[tier.name].stream(self._ask(request, tier, True)):
                    if not isinstance(chunk, RawEvents) and chunk.get("usage"):
                        usage = Usage.from_json(chunk["usage"])
                        decision.cost_usd += tier.cost(usage.prompt_tokens, usage.completion_tokens)
                    yield chunk
                return
            asked = self._ask(request, tier, False)
            started, cached = time.perf_counter(), request.trace.cache
            request.trace.deployment = ""  # set again by whatever answers this tier
            try:
                chunks, response = await _collect(self.backends[tier.name], asked)
            except ThriftyError:
                decision.escalations += 1
                continue
            answer = _answer(request, tier, response, started, cached)
            decision.cost_usd += tier.cost(response.usage.prompt_tokens, response.usage.completion_tokens)
            score = await self._score(asked, response, tier, decision)
            decision.score = score
            next_tier = plan[i + 1]
            if score >= self.spec.accept.get(tier.name, 0.5) or self._over_budget(
                decision, next_tier, response.usage
            ):
                for chunk in chunks:
                    if not request.params.get("logprobs"):
                        for choice in chunk.get("choices") or []:
                            choice.pop("logprobs", None)
                    yield chunk
                return
            request.trace.calls.append(answer)  # escalated from: never shown, still paid
            decision.escalations += 1

    def _ask(self, request: ChatRequest, tier: Tier, last: bool) -> ChatRequest:
        params = dict(request.params)
        if not last and self.spec.verifier in ("auto", "logprobs"):
            params["logprobs"] = True
        # A tier that may be escalated from is read whole: its chunks, parsed.
        return dataclasses.replace(
            request, model=tier.group, params=params, raw_stream=request.raw_stream and last
        )

    async def _score(
        self, request: ChatRequest, response: ChatResponse, tier: Tier, decision: Decision
    ) -> float:
        """``request`` as the tier was asked it (its model is the tier's group). The verifier's
        own calls are the tier's verification: priced onto the decision, marked with the tier."""
        calls = request.trace.calls
        before = len(calls)
        score = await self.verifier.score(request, response)
        for call in calls[before:]:
            call.tier = tier.name
            priced = tier if call.model == tier.group else self.priced.get(call.model)
            if priced is not None and not call.cache_hit:
                decision.cost_usd += priced.cost(call.usage.prompt_tokens, call.usage.completion_tokens)
        score = 1.0 if score is None else max(0.0, min(1.0, score))
        decision.verdicts[tier.name] = score >= self.spec.accept.get(tier.name, 0.5)
        return score


def _answer(
    request: ChatRequest, tier: Tier, response: ChatResponse, started: float, cached: CacheOutcome | None
) -> UpstreamCall:
    """A tier's answer as a call: where it ran, what it used; an ``escalated`` row if not served.

    ``cached`` is the trace's cache outcome before the call: a new hit means the cache answered.
    """
    trace = request.trace
    hit = trace.cache is not cached and trace.cache is not None and trace.cache.result == "hit"
    return UpstreamCall(
        purpose="escalated",
        request_id=f"{trace.request_id}-{tier.name}",
        model=tier.group,
        deployment=trace.deployment,
        usage=response.usage,
        latency_s=time.perf_counter() - started,
        tier=tier.name,
        cache_hit=hit,
        verdict=False,
    )


async def _collect(backend: Backend, request: ChatRequest) -> tuple[list[Chunk], ChatResponse]:
    """Read a whole stream; return its chunks and the answer they add up to."""
    chunks: list[Chunk] = []
    text: list[str] = []
    logprobs: list[Any] = []
    finish: str = "stop"
    usage = Usage()
    async for piece in backend.stream(request):
        chunk = parsed(piece)
        chunks.append(chunk)
        if chunk.get("usage"):
            usage = Usage.from_json(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            lp = (choice.get("logprobs") or {}).get("content")
            if isinstance(lp, list):
                logprobs.extend(lp)
            finish = choice.get("finish_reason") or finish
    body = completion_body(
        id=request.trace.request_id,
        model=request.model,
        content="".join(text),
        finish_reason=finish,
        usage=usage,
        logprobs={"content": logprobs} if logprobs else None,
    )
    return chunks, ChatResponse(body=body, usage=usage)


def _strip_logprobs(request: ChatRequest, body: dict[str, Any]) -> None:
    if request.params.get("logprobs"):
        return
    for choice in body.get("choices") or []:
        if "logprobs" in choice:
            choice["logprobs"] = None
