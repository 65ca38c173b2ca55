"""Fixtures for the cache tests: a fake clock, stores in tmp dirs, a real redis-server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from thrifty.cache.layer import CacheLayer
from thrifty.cache.settings import CacheSettings, StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.testing import FakeBackend


class Clock:
    """Time that moves only when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


class LayerFactory:
    def __init__(self, store: CacheStore) -> None:
        self.store = store

    def __call__(
        self, backend: FakeBackend, store: CacheStore | None = None, **settings: object
    ) -> CacheLayer:
        store = store or self.store
        config = CacheSettings(enabled=True, store=store.settings, **settings)  # type: ignore[arg-type]
        return CacheLayer(backend, "fast", config, store)


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[CacheStore]:
    """A store with L1 and an L2 file, on the fake clock."""
    s = CacheStore(StoreSettings(l2_path=str(tmp_path / "cache.sqlite3")), clock=clock)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def make_layer(store: CacheStore) -> LayerFactory:
    """Build a CacheLayer over a backend, on the shared test store by default."""
    return LayerFactory(store)
