"""Where learned state changes go: folded at once in one process, or ordered by Redis across replicas.

Every change to what a learning layer knows (a context found, an outcome
counted, a variant proposed, a user's override, a knowledge-base admission or
contradiction) is an *event*, a small JSON mapping. The layer's ``fold``
applies one event to its memory and returns what it decided (a promotion, a
proposal accepted). A journal decides when events are folded:

- :class:`LocalJournal` folds each event at once: one process, nothing shared
  (the knowledge base still shares its SQLite file, see :mod:`.knowledge`).
- :class:`RedisJournal` appends events to one Redis stream per group, and every
  replica folds the whole stream in its order, its own events included, so all
  replicas hold the same experiments and take the same decisions. A rating
  (:meth:`publish`) waits for its events to be folded; the request path
  (:meth:`post`) only queues them, and a background flush sends them. Each
  replica reads what the others wrote every ``refresh_s``. What a request was
  served with is kept in Redis for ``SERVED_TTL`` seconds, so a rating reaching
  another replica than the one that answered still counts.

If Redis fails, events are folded locally (one log line, ``/ready`` degraded)
and the replica keeps learning on its own until Redis answers again; those
events are not replayed to the others. The stream is trimmed to about
``MAX_EVENTS``: a replica that starts after trimming sees only the tail.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

log = logging.getLogger("thrifty.learn")

Event = Mapping[str, Any]
Fold = Callable[[Event], Any]
SERVED_TTL = 86_400  # seconds a served request is kept in Redis for its rating
MAX_EVENTS = 200_000  # the stream is trimmed (approximately) to this many events
FLUSH_EVERY = 0.05  # seconds queued events may wait to share one round trip


class Journal(Protocol):
    async def publish(self, events: Sequence[Event]) -> list[Any]:
        """Fold ``events`` (in the shared order); what each fold returned."""
        ...

    def post(self, event: Event) -> None:
        """Queue ``event`` from the request path: no waiting."""
        ...

    async def catch_up(self) -> None:
        """Fold what other replicas wrote since the last call."""
        ...

    async def flush(self) -> None:
        """Send what :meth:`post` and :meth:`remember` queued, now."""
        ...

    def remember(self, request_id: str, served: Mapping[str, Any]) -> None:
        """Keep what ``request_id`` was served with, for a rating arriving elsewhere."""
        ...

    async def recall(self, request_id: str) -> dict[str, Any] | None:
        """What another replica kept for ``request_id``, if anything."""
        ...

    def degraded(self) -> list[str]: ...

    async def aclose(self) -> None: ...


class LocalJournal:
    """One process: every event is folded the moment it is written."""

    shared = False

    def __init__(self, fold: Fold) -> None:
        self.fold = fold

    async def publish(self, events: Sequence[Event]) -> list[Any]:
        return [self.fold(event) for event in events]

    def post(self, event: Event) -> None:
        self.fold(event)

    async def catch_up(self) -> None:
        return None

    async def flush(self) -> None:
        return None

    def remember(self, request_id: str, served: Mapping[str, Any]) -> None:
        return None

    async def recall(self, request_id: str) -> dict[str, Any] | None:
        return None

    def degraded(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


class RedisJournal:
    """Events in one Redis stream, folded by every replica in the stream's order."""

    shared = True

    def __init__(self, url: str, prefix: str, fold: Fold, *, timeout: float = 1.0) -> None:
        self.url = url
        self.stream = prefix + "events"
        self.prefix = prefix
        self.fold = fold
        self.timeout = timeout
        self.last_id = "0-0"
        self.problem = ""
        self.folded = 0
        self._client: Any = None
        self._lock = asyncio.Lock()  # one fold at a time, in order
        self._queue: list[Event] = []
        self._served: dict[str, str] = {}
        self._flushing: asyncio.Task[None] | None = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout * 4, socket_connect_timeout=self.timeout * 4
            )
        return self._client

    def _failed(self, what: str, exc: BaseException) -> None:
        problem = f"learning: Redis {self.url} {what} failed ({type(exc).__name__}: {exc})"
        if not self.problem:
            log.warning("%s; this replica learns on its own until Redis answers again", problem)
        self.problem = problem

    def _fold_one(self, event: Event) -> Any:
        try:
            return self.fold(event)
        except Exception:  # one bad event must not stop the others
            log.exception("learning: an event could not be folded: %.200s", event)
            return None

    async def publish(self, events: Sequence[Event]) -> list[Any]:
        from redis.exceptions import RedisError

        if self._queue:  # what this replica queued before goes first: others fold in its order
            await self.flush()
        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout):
                    ids = await self._append(events)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("append", exc)
                return [self._fold_one(event) for event in events]
            mine = {entry_id: i for i, entry_id in enumerate(ids)}
            results: list[Any] = [None] * len(events)
            try:  # a failed read leaves the events in the stream: the next catch-up folds them
                async with asyncio.timeout(self.timeout * 10):
                    await self._read(mine, results)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("read", exc)
                return results
            self.problem = ""
            return results

    async def _append(self, events: Sequence[Event]) -> list[str]:
        pipe = self._redis().pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, {"e": json.dumps(event, separators=(",", ":"))}, maxlen=MAX_EVENTS)
        return [_text(entry_id) for entry_id in await pipe.execute()]

    async def _read(self, mine: Mapping[str, int], results: list[Any]) -> None:
        """Fold every event after ``last_id``; the results of ``mine`` go to ``results``."""
        while True:
            answer = await self._redis().xread({self.stream: self.last_id}, count=500)
            if not answer:
                return
            for raw_id, fields in answer[0][1]:
                entry_id = _text(raw_id)
                self.last_id = entry_id
                raw = fields.get(b"e") or fields.get("e")
                result = self._fold_one(json.loads(raw)) if raw is not None else None
                self.folded += 1
                if entry_id in mine:
                    results[mine[entry_id]] = result

    def post(self, event: Event) -> None:
        self._queue.append(event)
        self._flush_soon()

    def remember(self, request_id: str, served: Mapping[str, Any]) -> None:
        self._served[request_id] = json.dumps(served, separators=(",", ":"))
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(FLUSH_EVERY)
        finally:
            self._flushing = None
        await self.flush()

    async def flush(self) -> None:
        """Send what the request path queued: events to the stream, served requests with their TTL."""
        from redis.exceptions import RedisError

        events, served = self._queue, self._served
        self._queue, self._served = [], {}
        if served:
            try:
                pipe = self._redis().pipeline(transaction=False)
                for request_id, value in served.items():
                    pipe.set(self.prefix + "served:" + request_id, value, ex=SERVED_TTL)
                async with asyncio.timeout(self.timeout):
                    await pipe.execute()
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("write", exc)
        if events:
            await self.publish(events)

    async def catch_up(self) -> None:
        from redis.exceptions import RedisError

        async with self._lock:
            try:
                async with asyncio.timeout(self.timeout * 10):
                    await self._read({}, [])
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed("read", exc)
                return
            self.problem = ""

    async def recall(self, request_id: str) -> dict[str, Any] | None:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.timeout):
                raw = await self._redis().get(self.prefix + "served:" + request_id)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("read", exc)
            return None
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    def degraded(self) -> list[str]:
        return [self.problem] if self.problem else []

    async def aclose(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            await asyncio.gather(self._flushing, return_exceptions=True)
            self._flushing = None
        if self._client is not None:
            await self.flush()
            await self._client.aclose()
            self._client = None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
