"""The response cache: exact and semantic, memory -> disk -> Redis.

``wrap_cache(backend, group, config)`` is what ``thrifty.compose`` calls for
each model group; every group of one config shares one :class:`CacheStore`.
Layers: ``settings`` (config), ``options`` (per-request controls), ``keys``
(what makes requests the same), ``tiers`` over ``memory``/``disk``/``shared``
(the levels), ``semantic`` + ``vectors`` + ``verify`` (matching by meaning),
``layer`` (the wrapper itself).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from ..backend import Backend
from ..config import Config, ModelGroup
from .settings import CacheSettings, parse_settings

if TYPE_CHECKING:
    from .store import CacheStore

__all__ = ["CacheSettings", "parse_settings", "store_for", "wrap_cache"]

_stores: dict[int, CacheStore] = {}
_lock = threading.Lock()


def store_for(config: Config, settings: CacheSettings) -> CacheStore:
    """The one store of ``config`` (created on first use, dropped with the config)."""
    from .store import CacheStore

    with _lock:
        store = _stores.get(id(config))
        if store is None:
            store = _stores[id(config)] = CacheStore(settings.store)
            weakref.finalize(config, _stores.pop, id(config), None)
        return store


def wrap_cache(backend: Backend, group: ModelGroup, config: Config) -> Backend:
    """``backend`` behind the cache, or ``backend`` itself when the group does not cache."""
    settings = parse_settings(config, group)
    if not settings.enabled:
        return backend
    from .layer import CacheLayer

    return CacheLayer(backend, group.name, settings, store_for(config, settings))

