"""Ordered fallbacks between model groups, and a context-window fallback.

When the primary group fails with a retryable error (all its deployments
down, open, rate limited or failing), the same request goes to each group in
``fallbacks`` in order. When the prompt is too long for it
(:class:`ContextWindowExceeded`), it goes to ``context_window_fallbacks``
instead. A stream falls back only before its first chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from ..backend import Backend, Choice
from ..errors import ContextWindowExceeded, ThriftyError
from ..types import ChatRequest, ChatResponse, FallbackTaken, Piece


class FallbackChain(Choice):
    def __init__(
        self,
        primary: Backend,
        fallbacks: Sequence[tuple[str, Backend]],
        context_fallbacks: Sequence[tuple[str, Backend]],
    ) -> None:
        super().__init__(primary.name, [primary])
        self.primary = primary
        self.fallbacks = list(fallbacks)
        self.context_fallbacks = list(context_fallbacks)
        self.used: dict[str, int] = {}

    async def start(self) -> None:
        """Only the primary: the fallback groups are started as groups of their own."""
        await self.primary.start()

    async def aclose(self) -> None:
        await self.primary.aclose()

    def children(self) -> list[Backend]:
        """The primary, then every group it may fall back to."""
        return [self.primary, *(b for _, b in self.fallbacks), *(b for _, b in self.context_fallbacks)]

    def _next_targets(self, error: ThriftyError) -> list[tuple[str, Backend]]:
        if isinstance(error, ContextWindowExceeded):
            return self.context_fallbacks
        if error.retryable:
            return self.fallbacks
        return []

    def _mark(self, request: ChatRequest, target: str, error: ThriftyError) -> None:
        request.trace.fallback = FallbackTaken(self.name, target, type(error).__name__)
        self.used[target] = self.used.get(target, 0) + 1

    async def complete(self, request: ChatRequest) -> ChatResponse:
        try:
            return await self.primary.complete(request)
        except ThriftyError as exc:
            error = exc
        for target, backend in self._next_targets(error):
            self._mark(request, target, error)
            try:
                return await backend.complete(request.with_model(target))
            except ThriftyError as exc:
                if not (exc.retryable or isinstance(exc, ContextWindowExceeded)):
                    raise
                error = exc
        raise error

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        targets: list[tuple[str, Backend]] = [(self.name, self.primary)]
        error: ThriftyError | None = None
        while targets:
            target, backend = targets.pop(0)
            if error is not None:
                self._mark(request, target, error)
            started = False
            try:
                async for chunk in backend.stream(
                    request if target == self.name else request.with_model(target)
                ):
                    started = True
                    yield chunk
                return
            except ThriftyError as exc:
                if started:
                    raise
                if error is None:
                    targets = list(self._next_targets(exc))
                elif not (exc.retryable or isinstance(exc, ContextWindowExceeded)):
                    raise
                error = exc
        assert error is not None
        raise error

    def status(self) -> dict[str, object]:
        return {
            "group": self.name,
            "fallbacks": [n for n, _ in self.fallbacks],
            "context_window_fallbacks": [n for n, _ in self.context_fallbacks],
            "fallbacks_used": dict(self.used),
        }
