"""The cache as a backend wrapper: look up, call upstream once, store, replay.

Per request: parse the controls, skip sampled answers (unless configured),
read exact then (opt-in) semantic, and on a miss make one upstream call per
distinct request however many identical ones arrive meanwhile (single-flight).
Only whole answers are stored: never errors, never a stream that broke off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..backend import Backend, Wrapper
from ..errors import ThriftyError
from ..types import (
    CACHE_COALESCED,
    CACHE_HIT_EXACT,
    CACHE_MISS,
    CACHE_SKIPPED_NO_CACHE,
    CACHE_SKIPPED_SAMPLED,
    CacheOutcome,
    ChatRequest,
    ChatResponse,
    Chunk,
)
from .answer import CachedAnswer, StreamRecorder, answer_of
from .keys import exact_key, is_sampled, last_user_text, partition_key, scoped_namespace
from .options import request_cache
from .semantic import Question
from .settings import CacheSettings
from .store import CacheStore

if TYPE_CHECKING:
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

    async def start(self) -> None:
        """Start ``inner``; the store is started by its owner (the stack), before this."""
        if self.settings.semantic:
            await self.store.semantic()  # load the embedding model now, not on the first request
        await self.inner.start()

    async def purge(self, namespace: str) -> int:
        """Forget every cached answer in ``namespace`` (all groups sharing the store)."""
        return await self.store.purge(namespace)

    def status(self) -> dict[str, Any]:
        return self.store.stats()

    def degraded(self) -> list[str]:
        return self.store.degraded()

    # -- planning ----------------------------------------------------------------

    def plan(self, request: ChatRequest) -> Plan | None:
        """None when this request bypasses the cache entirely."""
        options = request_cache(request.options)
        if is_sampled(request) and not self.settings.cache_sampled:
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

    # -- reading -------------------------------------------------------------------

    async def lookup(self, request: ChatRequest, plan: Plan) -> CachedAnswer | None:
        trace = request.trace
        raw = await self.store.tiers.get(plan.key, plan.namespace, plan.ttls)
        if raw is not None:
            trace.cache = CACHE_HIT_EXACT
            return CachedAnswer.loads(raw)
        if plan.text is not None:
            found = await self._semantic_lookup(plan)
            if found is not None:
                answer, similarity = found
                trace.cache = CacheOutcome("hit", "semantic", similarity)
                return answer
        trace.cache = CACHE_MISS
        return None

    async def _semantic_lookup(self, plan: Plan) -> tuple[CachedAnswer, float] | None:
        assert plan.text is not None
        index = await self.store.semantic()
        if index is None:
            plan.text = None
            return None
        text, settings = plan.text, self.settings

        def search() -> tuple[Vector, list[Any]]:
            vector = index.vector(text)
            return vector, index.lookup(plan.partition, text, vector, settings.threshold, settings.verify)

        plan.vector, matches = await asyncio.to_thread(search)
        for match in matches:
            raw = await self.store.tiers.get(match.key, plan.namespace, plan.ttls)
            if raw is not None:
                return CachedAnswer.loads(raw), match.similarity
            index.forget(match.key)
        return None

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
        await self.store.remember(plan.partition, Question(plan.key, plan.namespace, plan.text, expires), vector)

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
        self._settle(plan, future, raw)
        if raw is not None:
            self.keep(plan, raw)
        return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
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
        try:
            async for chunk in self.inner.stream(request):
                recorder.add(chunk)
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
        self._settle(plan, future, raw)
        if raw is not None:
            self.keep(plan, raw)

    @staticmethod
    def _mark_served(request: ChatRequest) -> None:
        request.trace.deployment = request.trace.deployment or "cache"

    def _served(self, request: ChatRequest, answer: CachedAnswer) -> ChatResponse:
        self._mark_served(request)
        return answer.response(request)
