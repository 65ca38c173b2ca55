"""L1: an in-process LRU of answers, bounded by bytes, with a TTL per entry."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from .keys import in_purge

# Rough cost of the key, tuple and dict slot beside the value itself.
_OVERHEAD = 160


class Entry(NamedTuple):
    value: bytes
    expires: float
    namespace: str


class MemoryLevel:
    """Least-recently-used entries go first once ``max_bytes`` is exceeded."""

    def __init__(self, max_bytes: int, clock: Callable[[], float]) -> None:
        self.max_bytes = max_bytes
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, value: bytes, ttl: float, namespace: str) -> None:
        size = len(value) + len(key) + _OVERHEAD
        if ttl <= 0 or size > self.max_bytes:
            return
        self._remove(key)
        self._entries[key] = Entry(value, self.clock() + ttl, namespace)
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._remove(next(iter(self._entries)))

    def purge(self, namespace: str) -> set[str]:
        keys = {k for k, e in self._entries.items() if in_purge(e.namespace, namespace)}
        for key in keys:
            self._remove(key)
        return keys

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= len(entry.value) + len(key) + _OVERHEAD
