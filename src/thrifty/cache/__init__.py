"""The response cache: exact and semantic, memory -> disk -> Redis.

``build_store(config, embed)`` makes the one :class:`CacheStore` a stack's
groups share (``thrifty.compose`` builds, starts and closes it);
``wrap_cache(backend, group, config, store)`` puts a group behind it.
Layers: ``settings`` (config), ``options`` (per-request controls), ``keys``
(what makes requests the same), ``tiers`` over ``memory``/``disk``/``shared``
(the levels), ``semantic`` + ``vectors`` + ``verify`` (matching by meaning),
``layer`` (the wrapper itself).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..backend import Backend
from ..config import Config, ModelGroup
from .settings import CacheSettings, parse_settings

if TYPE_CHECKING:
    from .semantic import Embed, EmbedTokens
    from .store import CacheStore

__all__ = ["CacheSettings", "build_store", "parse_settings", "wrap_cache"]


def build_store(
    config: Config, embed: Embed | None = None, tokens: EmbedTokens | None = None
) -> CacheStore | None:
    """The store for ``config``'s caching groups; None when no group caches."""
    for group in config.models:
        settings = parse_settings(config, group)
        if settings.enabled:
            from .store import CacheStore

            return CacheStore(settings.store, embed=embed, tokens=tokens)
    return None


def wrap_cache(backend: Backend, group: ModelGroup, config: Config, store: CacheStore | None) -> Backend:
    """``backend`` behind the cache, or ``backend`` itself when the group does not cache."""
    settings = parse_settings(config, group)
    if not settings.enabled:
        return backend
    assert store is not None, "build_store(config) makes a store whenever a group caches"
    from .layer import CacheLayer

    return CacheLayer(backend, group.name, settings, store)
