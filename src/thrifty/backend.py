"""The one interface everything in thrifty implements.

A :class:`Backend` completes a chat request, or streams one. Providers
(OpenAI-compatible HTTP, Anthropic, the embedded llama.cpp model) implement it;
so does every capability (retry, breaker, balancer, cache, router, cascade,
metrics), each as a :class:`Wrapper` around one backend or a choice among
several. ``thrifty.compose`` stacks them from config in one readable place.

Every backend names the backends it calls, ``children()``: a wrapper its
``inner``, a choice its candidates, a provider none, a gateway the backends it
serves. The optional abilities a layer may have are small protocols with one
name each, found with ``isinstance`` over a walk of ``children()``:
:class:`ReportsStatus`, :class:`Purges`, :class:`Embeds`, :class:`TakesFeedback`.

Stream contract: ``stream()`` yields OpenAI ``chat.completion.chunk`` dicts and
always ends with one usage chunk (``choices == []`` and ``usage`` filled). The
server forwards that last chunk only when the client asked for
``stream_options.include_usage``. Before it, a provider may yield the upstream's
own bytes (:class:`~thrifty.types.RawEvents`) instead of chunks, but only while
``request.raw_stream`` is set: a layer that must read the chunks clears it on the
request before it calls its inner backend (and uses ``types.parsed`` on what comes back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol, runtime_checkable

from .types import ChatRequest, ChatResponse, Piece


@runtime_checkable
class Backend(Protocol):
    @property
    def name(self) -> str: ...

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]: ...

    async def start(self) -> None:
        """Load models, open connections; called once before traffic."""

    async def aclose(self) -> None:
        """Release everything; called once at shutdown."""

    def children(self) -> Sequence[Backend]:
        """The backends this one calls (none for a provider)."""


@runtime_checkable
class ReportsStatus(Protocol):
    """A layer with live state to show (breakers, queues, cache and router counters)."""

    def status(self) -> dict[str, Any]: ...


@runtime_checkable
class Purges(Protocol):
    """A layer that keeps answers and can forget a namespace of them."""

    async def purge(self, namespace: str) -> int: ...


@runtime_checkable
class Embeds(Protocol):
    """A layer that can turn texts into vectors: ``(vectors, tokens used)``."""

    async def embed(
        self, texts: list[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]: ...


@runtime_checkable
class TakesFeedback(Protocol):
    """A layer that learns from a client's 1-5 rating of a request it served."""

    def on_feedback(self, request_id: str, rating: int) -> None: ...


class Wrapper:
    """A backend that wraps another; override what you change."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    async def complete(self, request: ChatRequest) -> ChatResponse:
        return await self.inner.complete(request)

    def stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        return self.inner.stream(request)

    async def start(self) -> None:
        await self.inner.start()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def children(self) -> Sequence[Backend]:
        return (self.inner,)


class Choice:
    """A backend that picks among several (balancer, router, fallback)."""

    def __init__(self, name: str, backends: Sequence[Backend]) -> None:
        self.name = name
        self.backends = list(backends)

    async def start(self) -> None:
        for backend in self.backends:
            await backend.start()

    async def aclose(self) -> None:
        for backend in self.backends:
            await backend.aclose()

    def children(self) -> Sequence[Backend]:
        return self.backends


class Shared(Wrapper):
    """A reference to a backend owned elsewhere.

    Routers and fallback chains point at model groups that the gateway owns;
    they get a ``Shared`` view so starting or closing them does not start or
    close the group a second time.
    """

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None
