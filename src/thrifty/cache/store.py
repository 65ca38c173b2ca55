"""One cache store per stack, shared by every model group that caches.

It owns the levels (memory, disk, Redis) and the semantic index. Whoever builds
it starts and closes it: ``thrifty.compose`` builds one per stack (the
``Stack`` starts it before the layers and closes it after them); the cache
layers only use it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .semantic import Embed, EmbedTokens, Question, SemanticIndex
from .settings import StoreSettings
from .tiers import TieredStore
from .warm import FirstMinute, WarmReport, warm

if TYPE_CHECKING:
    from .vectors import Vector

log = logging.getLogger("thrifty.cache")


class CacheStore:
    """Levels + semantic index; ``embed`` turns questions into vectors (default: its own MiniLM)."""

    def __init__(
        self,
        settings: StoreSettings,
        *,
        clock: Callable[[], float] = time.time,
        embed: Embed | None = None,
        tokens: EmbedTokens | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.tiers = TieredStore(settings, clock)
        self._embed = embed
        self._tokens = tokens  # token vectors, for pair models that read them
        self._semantic: SemanticIndex | None = None
        self._semantic_ready: asyncio.Future[SemanticIndex] | None = None
        self._open = False
        self._listener: asyncio.Task[None] | None = None
        self.semantic_broken = False
        self.warmed: WarmReport | None = None
        self.first_minute = FirstMinute(self.tiers)
        self._warming: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Open the levels and listen for other replicas' purges (idempotent)."""
        if self._open:
            return
        self._open = True
        await self.tiers.open()
        if self.tiers.redis is not None:
            self._listener = asyncio.ensure_future(self.tiers.redis.listen_for_purges(self._purged_elsewhere))
        self.rewarm()

    def rewarm(self) -> None:
        """Fill L1 from L2 and the ledger's frequent keys in the background; a new first minute."""
        if self._warming is not None:
            self._warming.cancel()
        self.first_minute.start()
        if self.settings.warm:
            self._warming = asyncio.ensure_future(self._warm())

    async def _warm(self) -> None:
        s = self.settings
        try:
            self.warmed = await warm(
                self.tiers, s.ledger_path, days=s.warm_days, ttl=s.warm_ttl, clock=self.clock
            )
        except Exception:  # warming is an optimisation: never let it take the store down
            log.exception("cache: warming the memory level failed")
            return
        report = self.warmed
        if report.from_ledger or report.from_disk:
            log.info(
                "cache: memory level warmed with %d frequent and %d recent answers (%d bytes) in %.2fs",
                report.from_ledger,
                report.from_disk,
                report.bytes,
                report.seconds,
            )

    async def warmed_up(self) -> WarmReport | None:
        """Wait for the warming in progress, if any; its report."""
        if self._warming is not None:
            await asyncio.gather(self._warming, return_exceptions=True)
        return self.warmed

    async def stop(self) -> None:
        """Close the levels (idempotent)."""
        if not self._open:
            return
        self._open = False
        self.first_minute.stop()
        if self._warming is not None:
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)
            self._warming = None
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
            self._listener = None
        await self.tiers.aclose()

    async def _purged_elsewhere(self, namespace: str) -> None:
        await self.tiers.purge_local(namespace)
        if self._semantic is not None:
            self._semantic.purge(namespace)

    async def semantic(self) -> SemanticIndex | None:
        """The semantic index, built on first use from the questions kept on disk.

        None when the embedding model cannot be loaded: semantic lookups are then
        skipped (logged once) and the exact cache carries on.
        """
        if self._semantic is not None:
            return self._semantic
        if self._semantic_ready is None:
            self._semantic_ready = asyncio.ensure_future(self._load())
        try:
            return await asyncio.shield(self._semantic_ready)
        except (RuntimeError, ImportError, OSError) as exc:
            if not self.semantic_broken:
                log.warning("cache: semantic cache off, the embedding model cannot be loaded: %s", exc)
            self.semantic_broken = True
            return None

    async def _load(self) -> SemanticIndex:
        embed = self._embed
        if embed is None:
            from ..embeddings import EmbeddingModel

            model = EmbeddingModel()
            embed, self._tokens = model.embed, model.tokens
            self._embed = embed
        # Load the model now, off the event loop, rather than on the first lookup.
        await asyncio.to_thread(embed, ["warm up"])
        index = SemanticIndex(embed, self.clock, self.settings.hnsw_after, tokens=self._tokens)
        disk = self.tiers.disk
        rows = await disk.questions() if disk is not None else []
        if rows:
            await asyncio.to_thread(_restore, index, rows)
        self._semantic = index
        return index

    async def remember(self, partition: str, question: Question, vector: Vector) -> None:
        """Index a question (in a worker thread: HNSW inserts take CPU) and keep it on disk."""
        assert self._semantic is not None
        await asyncio.to_thread(self._semantic.add, partition, question, vector)
        disk = self.tiers.disk
        if disk is not None:
            row = (
                question.key,
                partition,
                question.namespace,
                question.text,
                vector.tobytes(),
                question.expires,
            )
            await disk.put_question(row)

    async def purge(self, namespace: str) -> int:
        """Forget every answer and question in ``namespace``; how many answers went."""
        if self._warming is not None:
            self._warming.cancel()  # it may be loading what goes now
        keys = await self.tiers.purge(namespace)
        if self._semantic is not None:
            keys |= self._semantic.purge(namespace)
        if self._open:
            self.rewarm()
        return len(keys)

    def degraded(self) -> list[str]:
        """Why a level of the cache is not in use now (empty when all are)."""
        reasons = self.tiers.disk.degraded() if self.tiers.disk is not None else []
        redis = self.tiers.redis
        if redis is not None and redis.down:
            reasons.append("cache: Redis does not answer; serving from memory and disk until it does")
        return reasons

    def stats(self) -> dict[str, float]:
        out = {k: float(v) for k, v in self.tiers.stats().items()}
        if self._semantic is not None:
            out["semantic_entries"] = float(len(self._semantic))
            out["semantic_rejected"] = float(self._semantic.rejected)
            out["semantic_busy"] = float(self._semantic.busy)
        if self.warmed is not None:
            out.update(self.warmed.to_json())
        out.update({k: float(v) for k, v in self.first_minute.to_json().items() if v is not None})
        return out


def _restore(index: SemanticIndex, rows: list[tuple[str, str, str, str, bytes, float]]) -> None:
    import numpy as np

    for key, partition, namespace, text, raw, expires in rows:
        index.add(partition, Question(key, namespace, text, expires), np.frombuffer(raw, dtype=np.float32))
