"""The cache as a backend wrapper: look up, call upstream once, store, replay.

Per request: parse the controls, skip sampled answers (unless configured),
read exact then (opt-in) semantic, and on a miss make one upstream call per
distinct request however many identical ones arrive meanwhile (single-flight).
With ``pair_model`` set, a fitted pair scorer (:mod:`thrifty.cache.pairs`)
judges semantic candidates instead of the strict verifier, and its probability
is the score a threshold applies to. With ``max_error_rate`` set, a share of
semantic hits is audited: the request goes upstream anyway, the fresh answer is
served, and the comparison with the cached one moves the thresholds (the
cosine threshold, or the pair model's; :mod:`thrifty.cache.guard`).
Only whole answers are stored: never errors, never a stream that broke off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from ..backend import Backend, Wrapper
from ..errors import ThriftyError
from ..types import (
    CACHE_COALESCED,
    CACHE_SKIPPED_NO_CACHE,
    CACHE_SKIPPED_SAMPLED,
    CacheOutcome,
    ChatRequest,
    ChatResponse,
    Piece,
    parsed,
)
from .answer import CachedAnswer, StreamRecorder, answer_of
from .guard import ThresholdGuard, answers_agree
from .keys import exact_key, is_sampled, last_user_text, partition_key, scoped_namespace
from .options import request_cache
from .semantic import Question
from .settings import CacheSettings
from .store import CacheStore

if TYPE_CHECKING:
    from .pairs import PairModel
    from .vectors import Vector

Outcome = bytes | None | BaseException  # a stored answer, nothing to share, or the error


@dataclass(slots=True)
class Plan:
    """What the cache will do for one request."""

    key: str
    namespace: str
    ttls: tuple[float, float, float]
    read: bool
    store: bool
    text: str | None = None  # last user turn, when semantic
    partition: str = ""
    vector: Vector | None = None
    audit: tuple[str, float, CachedAnswer] | None = None  # (key, score, answer) held back to be checked


class CacheLayer(Wrapper):
    """Answers from the cache when it can, from ``inner`` (once) when it cannot.

    ``store`` is shared with the other caching groups and owned by whoever built
    it (``thrifty.compose``: the stack starts it first and closes it last).
    """

    def __init__(self, inner: Backend, group: str, settings: CacheSettings, store: CacheStore) -> None:
        super().__init__(inner)
        self.group = group
        self.settings = settings
        self.store = store
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._pairs: PairModel | None = None
        self.guard = (
            ThresholdGuard(settings.threshold, settings.guard)
            if settings.guard.max_error_rate and settings.pair_model is None
            else None
        )

    def pairs(self) -> PairModel | None:
        """The pair model, read on first use (its guard, if any, starts from its threshold)."""
        path = self.settings.pair_model
        if path is None or self._pairs is not None:
            return self._pairs
        from .pairs import PairModel

        self._pairs = PairModel.load(path)
        if self.settings.guard.max_error_rate:
            self.guard = ThresholdGuard(self._pairs.threshold, self.settings.guard)
        return self._pairs

    async def start(self) -> None:
        """Start ``inner``; the store is started by its owner (the stack), before this."""
        if self.settings.semantic:
            await self.store.semantic()  # load the embedding model now, not on the first request
            self.pairs()
        await self.inner.start()

    async def purge(self, namespace: str) -> int:
        """Forget every cached answer in ``namespace`` (all groups sharing the store)."""
        return await self.store.purge(namespace)

    def status(self) -> dict[str, Any]:
        stats: dict[str, Any] = dict(self.store.stats())
        if self.guard is not None:
            stats = {**stats, "semantic_guard": {self.group: self.guard.stats()}}
        return stats

    def degraded(self) -> list[str]:
        return self.store.degraded()

    # -- planning ----------------------------------------------------------------

    def plan(self, request: ChatRequest) -> Plan | None:
        """None when this request bypasses the cache entirely."""
        options = request_cache(request.options)
        if self._sampled(request) and not self.settings.cache_sampled:
            request.trace.cache = CACHE_SKIPPED_SAMPLED
            return None
        ttls = self.settings.ttls
        if options.ttl is not None:
            ttls = (min(ttls[0], options.ttl), min(ttls[1], options.ttl), min(ttls[2], options.ttl))
        plan = Plan(
            key=exact_key(request, self.group, options.namespace),
            namespace=scoped_namespace(request.trace.tenant, options.namespace),
            ttls=ttls,
            read=not options.no_cache,
            store=not options.no_store,
        )
        semantic = self.settings.semantic if options.semantic is None else options.semantic
        if semantic:
            plan.text = last_user_text(request)
            if plan.text is not None:
                plan.partition = partition_key(request, self.group, options.namespace)
        if not plan.read:
            request.trace.cache = CACHE_SKIPPED_NO_CACHE
        return plan

    def _sampled(self, request: ChatRequest) -> bool:
        """Explicit temperature > 0 is sampled; no temperature follows ``unset_temperature``."""
        if request.params.get("temperature") is None:
            return self.settings.unset_temperature == "skip"
        return is_sampled(request)

    # -- reading -------------------------------------------------------------------

    async def lookup(self, request: ChatRequest, plan: Plan) -> CachedAnswer | None:
        trace = request.trace
        raw = await self.store.tiers.get(plan.key, plan.namespace, plan.ttls)
        if raw is not None:
            trace.cache = CacheOutcome("hit", "exact", key=plan.key)
            return CachedAnswer.loads(raw)
        if plan.text is not None:
            found = await self._semantic_lookup(plan)
            if found is not None:
                answer, similarity, key, score = found
                if self.guard is not None and self.guard.audit():
                    plan.audit = (key, score, answer)
                    plan.store = False  # the question is cached already; the fresh answer is only served
                    trace.cache = CacheOutcome("miss", similarity=similarity, skipped="audit")
                    return None
                trace.cache = CacheOutcome("hit", "semantic", similarity)
                return answer
        trace.cache = CacheOutcome("miss", key=plan.key)
        return None

    async def _semantic_lookup(self, plan: Plan) -> tuple[CachedAnswer, float, str, float] | None:
        assert plan.text is not None
        index = await self.store.semantic()
        if index is None:
            plan.text = None
            return None
        pairs = self.pairs()
        text, settings, guard = plan.text, self.settings, self.guard
        # With a pair model, the model judges and the cosine only picks the candidates.
        lowest = settings.threshold if guard is None else guard.lowest()
        lowest = lowest if pairs is None else pairs.floor

        def search() -> tuple[Vector, list[Any]]:
            vector = index.vector(text)
            strict_at = settings.threshold if settings.verify else 2.0  # the word rule's hits are kept
            return vector, index.lookup(
                plan.partition, text, vector, lowest, settings.verify, pairs, strict_at
            )

        plan.vector, matches = await asyncio.to_thread(search)
        for match in matches:
            if guard is not None:
                if match.score < guard.threshold(match.key):
                    continue
            elif pairs is not None and match.score < pairs.threshold:
                continue
            raw = await self.store.tiers.get(match.key, plan.namespace, plan.ttls)
            if raw is not None:
                return CachedAnswer.loads(raw), match.similarity, match.key, match.score
            index.forget(match.key)
        return None

    def _check(self, plan: Plan, fresh: CachedAnswer | None) -> None:
        """An audited hit: compare the cached answer with the fresh one, move the thresholds."""
        if plan.audit is None or self.guard is None or fresh is None:
            return
        key, score, cached = plan.audit
        self.guard.record(key, score, answers_agree(_text(cached), _text(fresh)))

    # -- writing -------------------------------------------------------------------

    def keep(self, plan: Plan, raw: bytes) -> None:
        if not plan.store:
            return
        self.store.tiers.put(plan.key, plan.namespace, raw, plan.ttls)
        if plan.text is not None:
            self.store.tiers.background(self._remember(plan))

    async def _remember(self, plan: Plan) -> None:
        assert plan.text is not None
        index = await self.store.semantic()
        if index is None:
            return
        vector = plan.vector
        if vector is None:
            vector = await asyncio.to_thread(index.vector, plan.text)
        expires = self.store.clock() + max(plan.ttls)
        await self.store.remember(
            plan.partition, Question(plan.key, plan.namespace, plan.text, expires), vector
        )

    # -- single-flight ------------------------------------------------------------

    def _lead(self, plan: Plan) -> asyncio.Future[Outcome] | None:
        """Become the one caller for this key (None if another already is, or not storing)."""
        if not plan.store or plan.key in self._inflight:
            return None
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[plan.key] = future
        return future

    def _settle(self, plan: Plan, future: asyncio.Future[Outcome] | None, outcome: Outcome) -> None:
        if future is None:
            return
        self._inflight.pop(plan.key, None)
        if not future.done():
            future.set_result(outcome)

    async def _follow(self, request: ChatRequest, plan: Plan) -> CachedAnswer | None:
        """Wait for an identical request in flight; its answer, or None to call upstream."""
        future = self._inflight.get(plan.key)
        if future is None or not plan.read:
            return None
        outcome = await asyncio.shield(future)
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome is None:
            return None
        request.trace.cache = CACHE_COALESCED
        return CachedAnswer.loads(outcome)

    # -- the backend interface -------------------------------------------------------

    async def complete(self, request: ChatRequest) -> ChatResponse:
        plan = self.plan(request)
        if plan is None:
            return await self.inner.complete(request)
        answer = await self.lookup(request, plan) if plan.read else None
        answer = answer or await self._follow(request, plan)
        if answer is not None:
            return self._served(request, answer)
        future = self._lead(plan)
        try:
            response = await self.inner.complete(request)
        except ThriftyError as exc:
            self._settle(plan, future, exc)
            raise
        except BaseException:
            self._settle(plan, future, None)
            raise
        answer = answer_of(response)
        raw = answer.dumps() if answer is not None else None
        self._check(plan, answer)
        self._settle(plan, future, raw)
        if raw is not None:
            self.keep(plan, raw)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        plan = self.plan(request)
        if plan is None:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        answer = await self.lookup(request, plan) if plan.read else None
        answer = answer or await self._follow(request, plan)
        if answer is not None:
            self._mark_served(request)
            for chunk in answer.chunks(request):
                yield chunk
            return
        future = self._lead(plan)
        recorder = StreamRecorder()
        request.raw_stream = False  # a fill keeps the answer: it reads the chunks
        try:
            async for chunk in self.inner.stream(request):
                recorder.add(parsed(chunk))
                yield chunk
        except ThriftyError as exc:
            self._settle(plan, future, exc)
            raise
        except BaseException:  # the client went away: a partial answer is never kept
            self._settle(plan, future, None)
            raise
        answer = recorder.answer()
        if request.params.get("logprobs"):  # a rebuilt stream has no logprobs to replay
            answer = None
        raw = answer.dumps() if answer is not None else None
        self._check(plan, answer)
        self._settle(plan, future, raw)
        if raw is not None:
            self.keep(plan, raw)

    @staticmethod
    def _mark_served(request: ChatRequest) -> None:
        request.trace.deployment = request.trace.deployment or "cache"

    def _served(self, request: ChatRequest, answer: CachedAnswer) -> ChatResponse:
        self._mark_served(request)
        return answer.response(request)


def _text(answer: CachedAnswer) -> str:
    """What an answer says: its first choice's content and tool calls."""
    choice = (answer.body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    calls = message.get("tool_calls")
    return str(message.get("content") or "") + ("" if not calls else orjson.dumps(calls).decode())
