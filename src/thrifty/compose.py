"""Where the onion is assembled: config in, one backend per servable model name out.

First the resources the layers share, owned by the :class:`Stack` (started
before the layers, closed after them)::

    the embedding model (semantic cache, learned router, /v1/embeddings)   thrifty.embeddings
    the cache store of every caching group                                  thrifty.cache.build_store
    the device pool of the ``provider: pool`` deployments                   thrifty.pool.build_pool

For each model group, from the inside out::

    provider per deployment        thrifty.providers.build
      -> balancer / retry / breaker / hedge / admission   thrifty.balance.build_group
      -> response cache                                    thrifty.cache.wrap_cache
      -> prompt compression (above the cache: keys are the compressed form)   thrifty.compress.wrap_compress
      -> learning (signals, prompt variants, knowledge)    thrifty.learn.wrap_learning
then, over the finished groups (each seen through a ``Shared`` view)::

    fallback chains between groups                         thrifty.balance.build_fallbacks
    routers (rules / learned / cascade / feedback)         thrifty.routing.build_routers

A new capability is a new wrapper added here, not an ``if`` somewhere else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .backend import Backend, Purges, ReportsStatus, Shared, TakesFeedback
from .config import Config

if TYPE_CHECKING:
    from .cache.store import CacheStore
    from .embeddings import EmbeddingModel
    from .observe import Observer
    from .pool.coordinator import Pool


def _embedding_model() -> EmbeddingModel:
    from .embeddings import EmbeddingModel

    return EmbeddingModel()


@dataclass
class Stack:
    """The composed backends by model name, and what they share.

    The stack owns the resources its layers share: the cache store and the
    embedding model. :meth:`start` opens the store before any layer starts;
    :meth:`aclose` closes the layers first, then the store, then drops the model.
    """

    backends: dict[str, Backend]
    owned: list[Backend] = field(default_factory=list)
    cache_store: CacheStore | None = None
    embedder: EmbeddingModel = field(default_factory=_embedding_model)
    pool: Pool | None = None  # the device pool behind ``provider: pool`` deployments

    async def start(self) -> None:
        if self.cache_store is not None:
            await self.cache_store.start()
        if self.pool is not None:
            await self.pool.start()
        await asyncio.gather(*(b.start() for b in self.unique()))

    async def aclose(self) -> None:
        try:
            for backend in self.unique():
                await backend.aclose()
        finally:
            if self.pool is not None:
                await self.pool.aclose()
            if self.cache_store is not None:
                await self.cache_store.stop()
            self.embedder.close()

    def unique(self) -> list[Backend]:
        """The backends to start and close, each once."""
        seen: dict[int, Backend] = {}
        for backend in self.owned or list(self.backends.values()):
            seen.setdefault(id(backend), backend)
        return list(seen.values())

    def walk(self) -> Iterator[Backend]:
        """Every layer of every stack, each once."""
        return self.walk_from(*self.backends.values())

    @staticmethod
    def walk_from(*tops: Backend) -> Iterator[Backend]:
        """Every layer below ``tops`` (themselves included), each once, following ``children()``."""
        seen: set[int] = set()
        todo: list[Backend] = list(reversed(tops))
        while todo:
            layer = todo.pop()
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            yield layer
            todo.extend(reversed(layer.children()))

    @staticmethod
    def layers(*tops: Backend) -> Iterator[Backend]:
        """The layers below ``tops`` whose abilities speak for themselves alone.

        A gateway nested in another is a container, not a layer: its own ``status``
        and ``embed`` speak for the whole of it, so the walk asks its layers instead.
        """
        from .gateway import Gateway

        for layer in Stack.walk_from(*tops):
            if not isinstance(layer, Gateway):
                yield layer

    def reporters(self) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
        """``(name, report)`` for each layer with live state (breakers, queues, caches, routers)."""
        for layer in self.layers(*self.backends.values()):
            if isinstance(layer, ReportsStatus):
                yield f"{type(layer).__name__}:{layer.name}", layer.status

    async def purge(self, namespace: str) -> int:
        """Forget ``namespace`` in every layer that keeps answers; how many went."""
        removed = 0
        for layer in self.layers(*self.backends.values()):
            if isinstance(layer, Purges):
                removed += await layer.purge(namespace)
        return removed

    def attach(self, observer: Observer) -> None:
        """Let the observer read each layer's live state and feed routers ratings."""
        for name, report in self.reporters():
            observer.add_gauge_source(name, report)
        from .observe.feedback import TakesSignals

        for layer in self.layers(*self.backends.values()):
            observer.watch(layer)  # model groups' upstream counts, loaded models' footprint
            if isinstance(layer, TakesFeedback):
                observer.add_feedback_listener(layer.on_feedback)
            if isinstance(layer, TakesSignals):
                observer.add_learner(layer)


def build(config: Config) -> Stack:
    from . import providers
    from .balance import build_fallbacks, build_group
    from .cache import build_store, wrap_cache
    from .compress import wrap_compress
    from .learn import wrap_learning
    from .pool import build_pool, pool_provider
    from .routing import build_routers

    embedder = _embedding_model()
    store = build_store(config, embedder.embed, embedder.tokens)
    pool = build_pool(config)  # shared by the `provider: pool` deployments
    make = providers.build if pool is None else pool_provider(pool, providers.build)
    groups: dict[str, Backend] = {}
    shared: dict[str, Backend] = {}  # filled below; a group's compressor may call another (summary_model)
    for group in config.models:
        deployments = [make(dep) for dep in group.deployments]
        backend = build_group(group, deployments, config)
        cached = wrap_compress(wrap_cache(backend, group, config, store), group, config, embedder, shared.get)
        groups[group.name] = wrap_learning(cached, group, config, embedder.embed)

    shared.update((name, Shared(b)) for name, b in groups.items())
    chains = {
        name: chain
        for name, chain in build_fallbacks(config, shared).items()
        if chain is not shared.get(name)  # groups without fallbacks come back as they went in
    }
    served: dict[str, Backend] = {**groups, **chains}
    routers = build_routers(config, {**shared, **{n: Shared(b) for n, b in chains.items()}}, embedder.embed)
    served.update(routers)
    owned = [*groups.values(), *chains.values(), *routers.values()]
    return Stack(backends=served, owned=owned, cache_store=store, embedder=embedder, pool=pool)
