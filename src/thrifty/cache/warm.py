"""Warming the memory level: the answers most likely to be asked for, loaded before they are.

At start (and after a purge) L1 is empty while L2 on disk still holds answers.
:func:`warm` fills L1 within its byte budget, most likely first:

1. the keys asked for most often in the ledger's last ``warm_days`` (every
   cacheable, i.e. deterministic, request records its exact key there), read
   from L2 in that order;
2. then the answers most recently written to L2, while budget remains.

It inserts the least likely first, so the LRU keeps the most likely longest,
and never evicts: it stops at the budget. Everything runs off the request path
(the ledger is read in a worker thread, L2 through its own thread).
:class:`FirstMinute` reports the hit rate of the first minute after warming
from the store's counters, with no work per request.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .disk import AnswerRow
    from .tiers import TieredStore

DAY = 86400.0
MAX_KEYS = 100_000
_OVERHEAD = 160  # as MemoryLevel counts an entry beside its value


def frequent_keys(ledger_path: str, since: float, limit: int = MAX_KEYS) -> list[str]:
    """Exact cache keys by how often they were asked since ``since``, most first (read-only).

    A missing ledger, or one written before keys were recorded, gives none.
    """
    try:
        db = sqlite3.connect(f"file:{ledger_path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute(
            "SELECT cache_key, count(*) AS n FROM requests WHERE ts >= ? AND cache_key != '' "
            "GROUP BY cache_key ORDER BY n DESC LIMIT ?",
            (since, limit),
        )
        return [str(key) for key, _ in rows]
    except sqlite3.Error:
        return []
    finally:
        db.close()


@dataclass
class WarmReport:
    from_ledger: int = 0  # entries loaded because the ledger asked for them often
    from_disk: int = 0  # entries loaded because they were written to L2 recently
    bytes: int = 0
    seconds: float = 0.0
    at: float = 0.0  # wall time warming finished

    def to_json(self) -> dict[str, float]:
        return {
            "warm_from_ledger": self.from_ledger,
            "warm_from_disk": self.from_disk,
            "warm_bytes": self.bytes,
            "warm_s": round(self.seconds, 3),
        }


def _size(row: AnswerRow) -> int:
    return len(row[2]) + len(row[0]) + _OVERHEAD


async def warm(
    tiers: TieredStore,
    ledger_path: str | None,
    *,
    days: float,
    ttl: float,
    clock: Callable[[], float] = time.time,
) -> WarmReport:
    """Fill ``tiers.memory`` from ``tiers.disk``, frequent ledger keys first; what was loaded."""
    started = time.perf_counter()
    report = WarmReport()
    memory, disk = tiers.memory, tiers.disk
    budget = memory.max_bytes - memory.bytes
    if disk is None or budget <= 0:
        return report
    keys: list[str] = []
    if ledger_path:
        keys = await asyncio.to_thread(frequent_keys, ledger_path, clock() - days * DAY)
    chosen: list[AnswerRow] = []
    seen: set[str] = set()
    if keys:
        found = {row[0]: row for row in await disk.rows(keys)}
        for key in keys:
            row = found.get(key)
            if row is None or key in memory:
                continue
            if _size(row) > budget:
                break
            budget -= _size(row)
            chosen.append(row)
            seen.add(key)
    report.from_ledger = len(chosen)
    if budget > 0:
        for row in await disk.recent(budget):
            if row[0] in seen or row[0] in memory or _size(row) > budget:
                continue
            budget -= _size(row)
            chosen.append(row)
    report.from_disk = len(chosen) - report.from_ledger
    now = clock()
    for key, namespace, value, expires in reversed(chosen):  # most likely last: kept longest
        memory.put(key, value, min(ttl, expires - now), namespace)
        report.bytes += len(value)
    report.seconds = time.perf_counter() - started
    report.at = now
    return report


class FirstMinute:
    """The hit rate of the first ``span`` seconds after a (re)start, from the store's counters."""

    def __init__(self, tiers: TieredStore, span: float = 60.0) -> None:
        self.tiers = tiers
        self.span = span
        self._base = self._counts()
        self._final: tuple[int, int, int] | None = None
        self._handle: asyncio.TimerHandle | None = None

    def _counts(self) -> tuple[int, int, int]:
        c = self.tiers.counters
        return c.hits["l1"], sum(c.hits.values()), c.misses

    def start(self) -> None:
        """Begin a new first minute now (at start, after a purge)."""
        if self._handle is not None:
            self._handle.cancel()
        self._base, self._final = self._counts(), None
        self._handle = asyncio.get_running_loop().call_later(self.span, self._close)

    def _close(self) -> None:
        self._final = self._counts()
        self._handle = None

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def to_json(self) -> dict[str, Any]:
        now = self._final or self._counts()
        l1, hits, misses = (a - b for a, b in zip(now, self._base, strict=True))
        lookups = hits + misses
        return {
            "first_minute_done": self._final is not None,
            "first_minute_lookups": lookups,
            "first_minute_hit_rate": round(hits / lookups, 4) if lookups else None,
            "first_minute_l1_hit_rate": round(l1 / lookups, 4) if lookups else None,
        }
