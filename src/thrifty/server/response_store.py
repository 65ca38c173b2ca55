"""Stored Responses API answers: ``store: true``, ``previous_response_id``, GET and DELETE by id.

One SQLite file (``<data_dir>/responses.db``) opened by the rules of
:mod:`thrifty.storage`, on one thread of its own: a request never waits for a
write. A response is kept in memory until its row is written: the rows of
``FLUSH_AFTER`` seconds go in one transaction, so a busy gateway writes in
batches, and a client that chains ``previous_response_id`` at once still
finds it (on another worker of ``serve --workers``, a miss of an id of
thrifty's shape is read again once the batch is due). Rows belong to the key
that made them (``Caller.key_id``); another key is told they do not exist.
Each row expires ``server.responses_ttl`` seconds after it was made.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import NotFound, StorageUnavailable
from ..storage import Backoff, Outage, cause, open_sqlite, wal_setup
from ..translate.responses import input_messages, output_message
from ..types import Message

log = logging.getLogger("thrifty.responses")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL,
    response BLOB NOT NULL, conversation BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires);
"""
_ADDED = (("responses", "items", "BLOB"),)  # columns added since the first files were made
_PURGE_EVERY = 500  # writes between sweeps of expired rows
FLUSH_AFTER = 0.05  # seconds a stored response waits (in memory, readable) to be written with others
_OURS = re.compile(r"resp_[0-9a-f]{24}")  # the shape of the ids thrifty gives


_Row = tuple[
    str, str, float, float, bytes, bytes, bytes
]  # id, owner, created, expires, response, conversation, items


@dataclass(frozen=True, slots=True)
class Stored:
    """One kept response: its JSON and the items it was made from (``GET .../input_items``)."""

    id: str
    owner: str
    expires: float
    response: dict[str, Any]
    items: list[dict[str, Any]]
    legacy: list[Message] | None = None  # a row from before items were kept: its chat conversation

    @property
    def conversation(self) -> list[Message]:
        """The conversation the response ends, as chat messages (input and output, no instructions)."""
        if self.legacy is not None:
            return [*self.legacy]
        return [*input_messages(self.items, skip_unknown=True), output_message(self.response)]


def _stored(row: _Row) -> Stored:
    """A row put but not yet written, read back."""
    return Stored(row[0], row[1], row[3], orjson.loads(row[4]), orjson.loads(row[6]))


class ResponseStore:
    def __init__(
        self,
        path: str,
        ttl: float,
        clock: Callable[[], float] = time.time,
        *,
        flush_after: float = FLUSH_AFTER,
        settle: float = 3 * FLUSH_AFTER,
    ) -> None:
        self.path = path
        self.ttl = ttl
        self.clock = clock
        self.flush_after = flush_after  # how long a row waits to be written with others
        self.settle = settle  # how long a miss waits for another worker's batch before reading again
        self.outage = Outage("response store", log, Backoff())
        self._db: sqlite3.Connection | None = None
        self._why = ""
        # Put, not yet written: the encoded rows (bytes and strings, which the garbage collector
        # never walks, where a response's dicts would be walked by every collection until written).
        self._pending: dict[str, _Row] = {}
        self._writes = 0
        self._queue: deque[_Row] = deque()  # in the order put
        self._flushing = False  # a flush is scheduled and has not started draining
        self._closed = False
        self._pool: ThreadPoolExecutor | None = None

    # -- the thread's side -------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        if self.outage.problem is not None and not self.outage.backoff.due():
            raise self._unavailable()
        try:
            self._db, _ = open_sqlite("response store", self.path, wal_setup(_SCHEMA, _ADDED))
        except StorageUnavailable as exc:
            self._why = cause(exc.__cause__) if exc.__cause__ is not None else exc.message
            self.outage.failed(exc.message)
            raise self._unavailable() from None
        self.outage.recovered()
        self._db.execute("DELETE FROM responses WHERE expires < ?", (self.clock(),))
        return self._db

    def _unavailable(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"The response store cannot be opened now: {self._why}. Stored responses are unavailable "
            "until it can; send the whole conversation as 'input', or try again later."
        )

    def _flush(self) -> None:
        """Write every queued response in one transaction (under load, many per flush)."""
        self._flushing = False  # a put from now on schedules the next flush
        rows: list[_Row] = []
        while self._queue:
            row = self._queue.popleft()
            if self._pending.get(row[0]) is row:  # not deleted meanwhile
                rows.append(row)
        if not rows:
            return
        now = self.clock()
        try:
            db = self._connection()
            with db:  # SQLite releases the GIL while it writes: the event loop runs on
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO responses (id, owner, created, expires, response, conversation, items) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            before, self._writes = self._writes, self._writes + len(rows)
            if self._writes // _PURGE_EVERY != before // _PURGE_EVERY:
                db.execute("DELETE FROM responses WHERE expires < ?", (now,))
        except StorageUnavailable:
            pass  # logged once by the outage; the responses were already answered
        except sqlite3.Error as exc:
            self.outage.failed(f"the response store {self.path} cannot be written: {cause(exc)}")
        finally:
            for row in rows:
                if self._pending.get(row[0]) is row:
                    del self._pending[row[0]]

    def _read(self, response_id: str) -> Stored | None:
        """The row of ``response_id`` in the file, if there is one."""
        try:
            row = (
                self._connection()
                .execute(
                    "SELECT owner, expires, response, conversation, items FROM responses WHERE id = ?",
                    (response_id,),
                )
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"The response store cannot be read: {cause(exc)}.") from None
        if row is None:
            return None
        response = orjson.loads(row[2])
        if row[4] is None:  # a row from before items were kept
            return Stored(response_id, row[0], row[1], response, [], orjson.loads(row[3]))
        return Stored(response_id, row[0], row[1], response, orjson.loads(row[4]))

    def _delete(self, response_id: str) -> None:
        try:
            self._connection().execute("DELETE FROM responses WHERE id = ?", (response_id,))
        except sqlite3.Error as exc:
            raise StorageUnavailable(f"The response store cannot be written: {cause(exc)}.") from None

    # -- the event loop's side ---------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="thrifty-responses")
        return self._pool

    def put(
        self, response: dict[str, Any], items: list[dict[str, Any]], owner: str, encoded: bytes | None = None
    ) -> None:
        """Keep a response (``encoded``: its JSON, if already made); returns at once.

        The row is written on the store's thread. The conversation is not kept
        beside the items: it is read back from them (:attr:`Stored.conversation`).
        """
        now = self.clock()
        # Encoded here (a few microseconds), so the store's thread holds the GIL only briefly.
        if encoded is None:
            encoded = orjson.dumps(response)
        row = (response["id"], owner, now, now + self.ttl, encoded, b"", orjson.dumps(items))
        self._pending[row[0]] = row
        self._queue.append(row)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_later(self.flush_after, self._schedule_flush)

    def _schedule_flush(self) -> None:
        if self._closed:
            return  # close() writes what is left
        self._executor().submit(self._flush)

    async def get(self, response_id: str, owner: str) -> Stored:
        """The response ``response_id`` of ``owner``; 404 when it is missing, expired or another key's."""
        pending = self._pending.get(response_id)
        record = None if pending is None else _stored(pending)
        if record is None and response_id.isascii():  # ids are ASCII; SQLite cannot take a lone surrogate
            record = await self._run(self._read, response_id)
            if record is None and _OURS.fullmatch(response_id):
                # Made moments ago by another worker (serve --workers), its row not written yet?
                await asyncio.sleep(self.settle)
                record = await self._run(self._read, response_id)
        if record is None or record.owner != owner or record.expires < self.clock():
            raise NotFound(f"No response with id '{response_id}' found.", param="response_id")
        return record

    async def delete(self, response_id: str, owner: str) -> None:
        await self.get(response_id, owner)
        self._pending.pop(response_id, None)  # a queued row is then never written
        await self._run(self._delete, response_id)

    async def _run(self, fn: Callable[[str], Any], arg: str) -> Any:
        future: Future[Any] = self._executor().submit(fn, arg)
        return await asyncio.wrap_future(future)

    def degraded(self) -> list[str]:
        problem = self.outage.problem
        return [] if problem is None else [f"{problem}; stored responses are unavailable"]

    def close(self) -> None:
        """Finish the queued writes, then close the file."""
        self._closed = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._queue:
            self._flush()
        db, self._db = self._db, None
        if db is not None:
            db.close()
