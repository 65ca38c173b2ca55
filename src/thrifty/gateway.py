"""The Gateway: thrifty as a library, and the engine behind the HTTP server.

A :class:`Gateway` is itself a backend: it looks up the model a request names
(a model group, a fallback chain or a router, all composed by
``thrifty.compose``), calls it, and reports the outcome to the observer
(ledger + metrics). The server is a thin HTTP layer over this object.

    async with Gateway.from_config("thrifty.yaml") as gw:
        reply = await gw.chat("smollm2", "Say hello")
        print(reply.text)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

from .backend import Backend, Embeds
from .config import Config, default_config, load_config
from .deadline import Deadline
from .errors import InvalidRequest, NotFound, ThriftyError
from .types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Message,
    Piece,
    RawEvents,
    UpstreamCall,
    Usage,
    trace_notes,
)

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from .embeddings import EmbeddingModel
    from .observe import Observer
    from .observe.events import RequestEvent
    from .prices import Rates
    from .storage import Degradable
    from .tenancy.service import Tenancy

T = TypeVar("T")
log = logging.getLogger("thrifty.gateway")


class Gateway:
    """Every configured model behind one ``complete`` / ``stream`` interface."""

    name = "thrifty"

    def __init__(
        self,
        config: Config | None = None,
        *,
        backends: Mapping[str, Backend] | None = None,
        observe: bool = True,
    ) -> None:
        from . import compose

        self.config = config or default_config()
        if backends is None:
            self.stack = compose.build(self.config)
        else:
            self.stack = compose.Stack(backends=dict(backends))
        self.backends = self.stack.backends
        self.observer: Observer | None = None
        if observe:
            from .observe import Observer

            self.observer = Observer(self.config)
            self.stack.attach(self.observer)
        # the prompt log (``ledger.log_prompts``, off by default): events then carry the messages
        self._log_prompts = self.observer is not None and self.observer.ledger_settings.log_prompts
        self._started: asyncio.Task[None] | None = None
        self._ready = False
        self._sync: _LoopThread | None = None
        self._key_hashes: dict[str, str] = {}
        self._watched: list[Degradable] = []
        # Teams, virtual keys, budgets and limits: whenever the gateway has keys at all.
        self.tenancy: Tenancy | None = None
        if self.config.server.keys_required or "tenancy" in self.config.sections:
            from .tenancy.settings import build_tenancy

            self.tenancy = build_tenancy(self.config)
        self._rates: dict[str, Any] = {}

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **kw: Any) -> Gateway:
        """Build from a YAML file, or the embedded model when ``path`` is None."""
        return cls(load_config(path) if path else default_config(), **kw)

    # -- lifecycle ------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready

    def models(self) -> list[str]:
        """The model names clients may ask for: every group, and the aliases not hidden."""
        shown = [alias for alias, (_, hidden) in self.config.aliases.items() if not hidden]
        return [*self.backends, *shown]

    async def start(self) -> None:
        """Load every backend (idempotent; concurrent callers share one start)."""
        if self._started is None:
            self._started = asyncio.ensure_future(self._start())
        await asyncio.shield(self._started)

    async def _start(self) -> None:
        if self.observer is not None:
            await self.observer.start()
        await self.stack.start()
        self._ready = True
        if self.observer is not None:
            self.observer.mark_ready()

    async def aclose(self) -> None:
        await self._close_backends()
        if self.observer is not None:
            await self.observer.aclose()
        if self._sync is not None:
            self._sync.stop()
            self._sync = None

    async def _close_backends(self) -> None:
        self._ready = False
        await self.stack.aclose()
        if self.tenancy is not None:
            await self.tenancy.aclose()
        pool: ThreadPoolExecutor | None = getattr(self, "_cpu_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def watch(self, part: Degradable) -> None:
        """Include ``part`` (built beside the gateway, e.g. the server's batch store) in :meth:`degraded`."""
        self._watched.append(part)

    def degraded(self) -> list[str]:
        """Why the gateway runs degraded now: each part that serves without its store says why.

        Empty when every part is whole. The ledger, the cache's disk level and
        watched parts (the batch store) report here; ``/ready`` shows the list.
        """
        from .storage import Degradable

        reasons: dict[str, None] = {}  # ordered, each reason once (groups share one cache store)
        for part in (self.observer, *self.stack.walk(), *self._watched):
            if isinstance(part, Degradable):
                reasons.update(dict.fromkeys(part.degraded()))
        return list(reasons)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the backend interface -----------------------------------------------

    def resolve(self, model: str) -> Backend:
        backend = self.backends.get(model)
        if backend is None and model in self.config.aliases:
            backend = self.backends.get(self.config.aliases[model][0])  # router_settings.model_group_alias
        if backend is None:
            raise NotFound(
                f"The model '{model}' does not exist; available: {', '.join(self.backends)}.",
                param="model",
                code="model_not_found",
            )
        return backend

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """Answer ``request`` within its deadline; every outcome leaves one ledger row."""
        try:
            backend = self.resolve(request.model)
            deadline = Deadline.for_request(self.config.server.request_timeout, request.options)
            try:
                if request.trace.principal is not None:
                    await self._admit(request)
                if not self._ready:
                    await deadline.run(self.start())
                response = await deadline.run(backend.complete(request))
            finally:
                deadline.close()
        except ThriftyError as exc:
            _scrub(exc, self.config)
            self._record(request, status=exc.status, error=exc.type)
            raise
        except asyncio.CancelledError:
            self._record(request, status=499, error="client_closed")
            raise
        except Exception:
            self._record(request, status=500, error="server_error")
            raise
        body = response.body
        body["id"] = request.trace.request_id
        if "usage" not in body:
            body["usage"] = response.usage.to_json()
        self._record(request, usage=response.usage)
        return response

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer's chunks within the request's deadline; one ledger row however it ends.

        A stream the client leaves early is recorded with the completion tokens
        it was sent: the upstream's count when its usage arrived, else an
        estimate from the text delivered (noted ``usage: estimated``).
        """
        request.raw_stream = False
        return cast(AsyncIterator[Chunk], self._stream(request))  # raw_stream off: chunks only

    def stream_pieces(self, request: ChatRequest) -> AsyncIterator[Piece]:
        """:meth:`stream` for a caller that writes SSE: where no layer on the request's path
        reads the chunks, the upstream's events come as bytes (:class:`RawEvents`),
        ids already the request's, and only the closing usage chunk is parsed."""
        request.raw_stream = True
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[Piece]:
        from .providers.openai import generated_chars

        usage: Usage | None = None
        first, sent = True, 0  # characters of generated text handed to the caller
        status, error = 200, None
        deadline: Deadline | None = None
        try:
            backend = self.resolve(request.model)
            deadline = Deadline.for_request(self.config.server.request_timeout, request.options)
            if request.trace.principal is not None:
                await self._admit(request)
            if not self._ready:
                await deadline.run(self.start())
            chunks = backend.stream(request).__aiter__()
            try:
                while True:
                    try:
                        chunk = await deadline.run(anext(chunks))
                    except StopAsyncIteration:
                        break
                    if first:
                        first = False
                        request.trace.ttft_s = time.perf_counter() - request.trace.started
                    if isinstance(chunk, RawEvents):
                        sent += chunk.chars
                        yield chunk
                        continue
                    chunk["id"] = request.trace.request_id
                    raw_usage = chunk.get("usage")
                    if raw_usage:
                        usage = Usage.from_json(raw_usage)
                    sent += generated_chars(chunk)
                    yield chunk
            finally:
                closer = getattr(chunks, "aclose", None)
                if closer is not None:
                    await closer()
        except ThriftyError as exc:
            _scrub(exc, self.config)
            status, error = exc.status, exc.type
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status, error = 499, "client_closed"
            raise
        except Exception:
            status, error = 500, "server_error"
            raise
        finally:
            if deadline is not None:
                deadline.close()
            if usage is None and not first:
                usage = _delivered_usage(request, sent)
            self._record(request, usage=usage, status=status, error=error)

    async def embed(
        self, model: str, texts: list[str], dimensions: int | None = None
    ) -> tuple[list[list[float]], int]:
        """Embeddings from a configured model that has them, or the embedded MiniLM.

        ``dimensions`` goes to an upstream as OpenAI's parameter (the upstream
        refuses it if its model cannot shorten vectors); the embedded MiniLM
        only has its own 384.
        """
        if model in self.backends:
            for layer in self.stack.layers(self.backends[model]):
                if isinstance(layer, Embeds):
                    return await layer.embed(texts, dimensions)
            raise InvalidRequest(f"The model '{model}' does not serve embeddings.", param="model")
        if model in LOCAL_EMBEDDING_MODELS:
            native = self.stack.embedder.dim
            if dimensions is not None and dimensions != native:
                raise InvalidRequest(
                    f"The model '{model}' returns {native} dimensions and cannot shorten them; "
                    f"omit 'dimensions' or send {native}.",
                    param="dimensions",
                )
            # CPU-bound: on a pool of its own (server.cpu_workers threads), never asyncio's
            # default executor, which /metrics and file work share.
            pool: ThreadPoolExecutor | None = getattr(self, "_cpu_pool", None)
            if pool is None:
                from concurrent.futures import ThreadPoolExecutor

                workers = self.config.server.cpu_workers
                pool = self._cpu_pool = ThreadPoolExecutor(workers, thread_name_prefix="thrifty-cpu")
            return await asyncio.get_running_loop().run_in_executor(
                pool, _local_embed, self.stack.embedder, texts
            )
        raise NotFound(
            f"The embedding model '{model}' does not exist; try 'all-minilm-l6-v2'.",
            param="model",
            code="model_not_found",
        )

    def children(self) -> list[Backend]:
        """The backends this gateway serves (each once), so a gateway can sit inside another."""
        return self.stack.unique()

    def status(self) -> dict[str, Any]:
        """Live state of every layer that reports one: breakers, queues, caches, routers."""
        return {name: report() for name, report in self.stack.reporters()}

    # -- conveniences for library users -----------------------------------

    async def chat(self, model: str, messages: str | list[Message], **params: Any) -> ChatResponse:
        """One chat completion; ``messages`` may be a plain prompt string."""
        return await self.complete(_request(model, messages, params, stream=False))

    async def chat_stream(
        self, model: str, messages: str | list[Message], **params: Any
    ) -> AsyncGenerator[str, None]:
        """Stream the answer's text pieces as they arrive."""
        async for chunk in self.stream(_request(model, messages, params, stream=True)):
            for choice in chunk.get("choices") or ():
                text = (choice.get("delta") or {}).get("content")
                if text:
                    yield text

    def chat_sync(self, model: str, messages: str | list[Message], **params: Any) -> ChatResponse:
        """Blocking :meth:`chat`, for scripts and notebooks without an event loop."""
        return self._loop().run(self.chat(model, messages, **params))

    def chat_stream_sync(self, model: str, messages: str | list[Message], **params: Any) -> Iterator[str]:
        """Blocking :meth:`chat_stream`."""
        loop = self._loop()
        agen = self.chat_stream(model, messages, **params)
        try:
            while True:
                try:
                    yield loop.run(agen.__anext__())
                except StopAsyncIteration:
                    return
        finally:
            loop.run(agen.aclose())

    def close_sync(self) -> None:
        """Close after sync use: drains the ledger. Also runs at interpreter exit.

        The ledger's writer thread is joined right here, on the calling thread:
        at interpreter exit the default executor is already shut down, so an
        async close could not hand the join to a worker thread.
        """
        sync = self._sync
        if sync is None:
            return
        try:
            sync.run(self._close_backends())
        except Exception:  # the ledger must still be drained
            log.exception("closing the model backends failed")
        finally:
            if self.observer is not None:
                self.observer.close()
            sync.stop()
            self._sync = None

    def _loop(self) -> _LoopThread:
        if self._sync is None:
            import atexit

            self._sync = _LoopThread()
            # Sync callers often never close: drain what was accepted before the process ends.
            atexit.register(self.close_sync)
        return self._sync

    # -- observation -------------------------------------------------------

    def key_hash(self, api_key: str) -> str:
        if not api_key:
            return ""
        digest = self._key_hashes.get(api_key)
        if digest is None:
            digest = hashlib.sha256(api_key.encode()).hexdigest()[:12]
            if len(self._key_hashes) < 10_000:
                self._key_hashes[api_key] = digest
        return digest

    def _record(
        self,
        request: ChatRequest,
        *,
        usage: Usage | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> None:
        ticket = request.trace.ticket
        if ticket is not None and self.tenancy is not None:
            self._settle(ticket, request.trace.deployment, usage or Usage(), request.trace.calls)
        if self.observer is None:
            return
        self.observer.record(self.event(request, usage=usage, status=status, error=error))

    # -- tenancy -------------------------------------------------------------

    async def _admit(self, request: ChatRequest) -> None:
        """Reserve the request's worst case against its key's and team's limits and budgets."""
        from .tenancy.service import estimate_prompt_tokens

        assert self.tenancy is not None
        params = request.params
        max_tokens = params.get("max_completion_tokens", params.get("max_tokens"))
        choices = params.get("n", 1)
        request.trace.ticket = await self.tenancy.admit(
            request.trace.principal,
            request.model,
            estimate_prompt_tokens(request.messages),
            max_tokens if isinstance(max_tokens, int) else None,
            request.trace.request_id,
            choices if isinstance(choices, int) else 1,
        )

    def _settle(self, ticket: Any, deployment: str, usage: Usage, calls: Sequence[UpstreamCall] = ()) -> None:
        """Turn the reservation into real spend, off the response path."""
        assert self.tenancy is not None
        rates = self._rates_of(deployment)
        cost = rates.usage_cost(usage)
        tokens = usage.total_tokens
        for call in calls:  # a cascade's escalated answers and verifier calls are the request's spend
            tokens += call.usage.total_tokens
            if not call.cache_hit:
                cost += self._rates_of(call.deployment).usage_cost(call.usage)
        self.tenancy.settle(ticket, tokens, cost)  # queued: Redis gets it in a batch

    def _rates_of(self, deployment: str) -> Rates:
        rates = self._rates.get(deployment)
        if rates is None:
            from .prices import UNPRICED, lookup

            found = [d for g in self.config.models for d in g.deployments if d.name == deployment]
            rates = self._rates[deployment] = lookup(found[0]) if found else UNPRICED
        return rates

    def event(
        self,
        request: ChatRequest,
        *,
        usage: Usage | None = None,
        status: int = 200,
        error: str | None = None,
    ) -> RequestEvent:
        from .observe.events import RequestEvent

        trace = request.trace
        usage = usage or Usage()
        latency = time.perf_counter() - trace.started
        return RequestEvent(
            request_id=trace.request_id,
            ts=time.time(),
            model=request.model,
            deployment=trace.deployment,
            stream=request.stream,
            status=status,
            error_type=error,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cached_tokens=usage.cached_tokens,
            latency_s=latency,
            ttft_s=trace.ttft_s,
            overhead_s=max(0.0, latency - trace.upstream_s),
            attempts=trace.attempts,
            api_key=trace.key_id or self.key_hash(trace.api_key),
            tenant=trace.tenant,
            team=(trace.principal.key.team or "") if trace.principal is not None else "",
            user=trace.user,
            cache=trace.cache,
            route=trace.route,
            fallback=trace.fallback,
            compress=trace.compress,
            annotations=trace_notes(trace),
            cache_write_tokens=usage.cache_write_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            calls=trace.calls,
            messages=request.messages if self._log_prompts else None,
        )


def _scrub(exc: ThriftyError, config: Config) -> None:
    """Last line of defence: no configured upstream key leaves in an error, whatever raised it."""
    for group in config.models:
        for deployment in group.deployments:
            key = deployment.api_key
            if key and key in exc.message:
                exc.message = exc.message.replace(key, "[redacted]")
                exc.args = (exc.message,)
            if key and exc.code is not None and key in exc.code:
                exc.code = None


def _delivered_usage(request: ChatRequest, chars: int) -> Usage:
    """Tokens of a stream that ended before its usage arrived, estimated from the text sent."""
    from .providers.estimate import CHARS_PER_TOKEN, estimate_usage

    request.trace.note("usage", "estimated")
    usage = estimate_usage(request.messages, "")
    usage.completion_tokens = -(-chars // CHARS_PER_TOKEN)
    return usage


LOCAL_EMBEDDING_MODELS = ("all-minilm-l6-v2", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def _local_embed(embedder: EmbeddingModel, texts: list[str]) -> tuple[list[list[float]], int]:
    vectors = embedder.embed(texts)
    tokens = sum(len(t.split()) for t in texts)
    return [list(map(float, v)) for v in vectors], tokens


def _request(
    model: str, messages: str | list[Message], params: dict[str, Any], *, stream: bool
) -> ChatRequest:
    from .validate import chat_request, check_encodable

    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    body: dict[str, Any] = {"model": model, "messages": messages, **params, "stream": stream}
    request = chat_request(body)
    # Python values never went through the server's JSON parser: apply its bounds here.
    check_encodable(body)
    return request


class _LoopThread:
    """An event loop on a daemon thread, so sync callers can drive async code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="thrifty-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
