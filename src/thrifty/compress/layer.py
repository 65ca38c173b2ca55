"""The compressor as a backend wrapper: the prompt shrinks on its way in, nothing else changes.

Per request: pick the mode (request, then key, then group), leave short or
unshrinkable prompts alone, run the mode's passes, lay tools out in a stable
order, and record what went on the trace (``x-thrifty-compress`` and the
ledger's notes). The layer sits above the response cache, so a compressed
request is cached under its compressed form. Answers pass through untouched;
the ledger bills from the upstream's usage, cached prompt tokens included.

With ``summary_model`` set, the summary of old turns is written by that model
group (:mod:`.summary`), cached per span of old turns so the prefix stays the
same from turn to turn; on failure or past ``summary_timeout_s`` the
extractive summary is used.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..backend import Backend, Wrapper
from ..types import ChatRequest, ChatResponse, CompressOutcome, Piece
from .engine import shrink
from .extract import Scorer
from .history import Summarise, extractive_summary
from .layout import prompt_cache_key, stable_tools
from .relevance import blend, bm25
from .settings import CompressSettings, Knobs, request_knobs
from .tokens import counter, messages_tokens

if TYPE_CHECKING:
    from ..embeddings import EmbeddingModel
    from .summary import SummaryWriter

log = logging.getLogger("thrifty.compress")


class CompressLayer(Wrapper):
    """Sends ``inner`` a smaller prompt that means the same (or, aggressive, nearly)."""

    def __init__(
        self,
        inner: Backend,
        group: str,
        settings: CompressSettings,
        embedder: EmbeddingModel | None = None,
        groups: Callable[[str], Backend | None] | None = None,
    ) -> None:
        super().__init__(inner)
        self.group = group
        self.settings = settings
        self.embedder = embedder
        self.writer: SummaryWriter | None = None
        if settings.summary_model and groups is not None:
            from .summary import SummaryWriter

            self.writer = SummaryWriter(settings.summary_model, groups, settings.summary_timeout_s)
        self.count = counter(settings.exact_tokens)
        self._always_off = settings.knobs.mode == "off" and not settings.keys
        self.compressed = 0
        self.tokens_in = 0
        self.tokens_out = 0

    def status(self) -> dict[str, Any]:
        """Gauges: prompts compressed, their tokens before, and the tokens saved (thrifty's count)."""
        return {
            "compressed": self.compressed,
            "tokens_in": self.tokens_in,
            "tokens_saved": self.tokens_in - self.tokens_out,
            **(self.writer.status() if self.writer is not None else {}),
        }

    def _untouched(self, request: ChatRequest) -> bool:
        return self._always_off and "compress" not in request.options

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._untouched(request):
            return await self.inner.complete(request)
        return await self.inner.complete(await self.prepare(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        if self._untouched(request):
            return self.inner.stream(request)
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        prepared = await self.prepare(request)
        async for chunk in self.inner.stream(prepared):
            yield chunk

    async def prepare(self, request: ChatRequest) -> ChatRequest:
        """The request as it will be sent upstream; the trace says what changed."""
        trace = request.trace
        knobs = request_knobs(self.settings, request.options, trace.key_id)
        if knobs.mode == "off":
            return request
        before = messages_tokens(request.messages, self.count)
        if before < knobs.min_tokens:
            trace.compress = CompressOutcome(knobs.mode, before, before, skipped="short")
            return request
        scorer: Scorer = bm25
        if knobs.mode == "aggressive" and knobs.scorer == "hybrid" and self.embedder is not None:
            scorer = self._hybrid
        messages, removed = await self._shrink_with(request, knobs, scorer)
        params = stable_tools(request.params) if self.settings.layout else request.params
        extra = request.extra
        if self.settings.prompt_cache_key and "prompt_cache_key" not in extra:
            extra = {**extra, "prompt_cache_key": prompt_cache_key(trace.tenant, request.messages, params)}
        options = request.options
        if self.settings.cache_control and "cache_breakpoints" not in options:
            options = {**options, "cache_breakpoints": True}  # Anthropic upstreams mark the stable prefix
        after = before if messages is None else messages_tokens(messages, self.count)
        if messages is None or after >= before:
            skipped = "unsupported" if messages is None else "no-gain"
            trace.compress = CompressOutcome(knobs.mode, before, before, skipped=skipped)
            messages, after = request.messages, before
        else:
            trace.compress = CompressOutcome(knobs.mode, before, after, removed)
        self.compressed += after < before
        self.tokens_in += before
        self.tokens_out += after
        return dataclasses.replace(request, messages=messages, params=params, extra=extra, options=options)

    async def _shrink_with(
        self, request: ChatRequest, knobs: Knobs, scorer: Scorer
    ) -> tuple[list[dict[str, Any]] | None, tuple[tuple[str, int], ...]]:
        """The passes (in a thread when MiniLM scores), then the model's summary if one is configured."""
        hybrid = scorer is not bm25
        old: list[Sequence[Any]] = []

        def noting(turns: Sequence[Any], query: str) -> str:
            old.append(turns)
            return extractive_summary(turns, query)

        summarise = noting if self.writer is not None else None
        if hybrid:
            result = await asyncio.to_thread(self._shrink, request, knobs, scorer, summarise)
        else:
            result = self._shrink(request, knobs, scorer, summarise)
        if self.writer is None or not old or result[0] is None:
            return result
        written = await self.writer.summary(old[0])
        if written is None:  # failed or too slow: the extractive summary stands
            return result

        def model(turns: Sequence[Any], query: str) -> str:
            return written

        if hybrid:
            messages, removed = await asyncio.to_thread(self._shrink, request, knobs, scorer, model)
        else:
            messages, removed = self._shrink(request, knobs, scorer, model)
        return messages, tuple(sorted((*removed, ("model-summary", 1))))

    def _shrink(
        self, request: ChatRequest, knobs: Knobs, scorer: Scorer, summarise: Summarise | None = None
    ) -> tuple[list[dict[str, Any]] | None, tuple[tuple[str, int], ...]]:
        """The compressed messages and what went; None when the passes met a shape they do not know."""
        try:
            messages, tally = shrink(request.messages, knobs, self.count, scorer, summarise)
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            # A shape the passes do not know: the request goes as it came.
            log.warning(
                "compress: %s left request %s unchanged: %r", self.group, request.trace.request_id, exc
            )
            return None, ()
        return messages, tally.items()

    def _hybrid(self, chunks: Sequence[str], query: str) -> list[float]:
        assert self.embedder is not None
        vectors = self.embedder.embed([query, *chunks])
        cosines = [float(v) for v in vectors[1:] @ vectors[0]]
        return blend(bm25(chunks, query), cosines)
