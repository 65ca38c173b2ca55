"""L2: answers on local disk in SQLite (WAL), surviving restarts.

Every call runs on one dedicated thread, so the event loop never waits on the
disk. A file that SQLite reports as damaged, confirmed by ``quick_check``, is
renamed aside (``<name>.corrupt-<time>``) and a fresh one is created. A file
that cannot be opened for any other reason (read-only, disk full, locked) is
left alone: the cache runs from memory, :meth:`DiskLevel.degraded` says why, and
the level keeps trying to open it in the background with a bounded backoff.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ..errors import StorageUnavailable
from ..storage import Backoff, Outage, cause, confirmed_damaged, is_damaged, open_sqlite, set_aside, wal_setup
from .keys import every_tenant

log = logging.getLogger("thrifty.cache")
T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY, namespace TEXT NOT NULL, value BLOB NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS answers_ns ON answers(namespace);
CREATE TABLE IF NOT EXISTS questions (
    key TEXT PRIMARY KEY, partition TEXT NOT NULL, namespace TEXT NOT NULL,
    question TEXT NOT NULL, vector BLOB NOT NULL, expires REAL NOT NULL);
CREATE INDEX IF NOT EXISTS questions_ns ON questions(namespace);
"""
_SWEEP_EVERY = 1000

QuestionRow = tuple[str, str, str, str, bytes, float]
AnswerRow = tuple[str, str, bytes, float]  # key, namespace, value, expires


def _setup(db: sqlite3.Connection) -> None:
    wal_setup(_SCHEMA)(db)
    db.execute("SELECT count(*) FROM answers").fetchone()  # a damaged file usually shows here


class DiskLevel:
    """A SQLite file of answers (and semantic questions), used from one worker thread."""

    def __init__(
        self, path: str, clock: Callable[[], float] = time.time, backoff: Backoff | None = None
    ) -> None:
        self.path = path
        self.clock = clock
        self.errors = 0
        self.set_aside: list[str] = []
        self.outage = Outage("cache disk level", log, backoff)
        self._db: sqlite3.Connection | None = None
        self._writes = 0
        self._closed = False
        self._retry: asyncio.Task[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-cache-l2")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        """Open the file; when it cannot be opened now, serve misses and keep trying in the background."""
        await self._run(self._open)
        self._keep_trying()

    def _open(self) -> bool:
        try:
            self._db, kept = open_sqlite("cache file", self.path, _setup)
        except StorageUnavailable as exc:
            self.outage.failed(exc.message)
            return False
        if kept is not None:
            self.set_aside.append(kept)
        self.outage.recovered()
        return True

    def _keep_trying(self) -> None:
        """Start the background reopening, if the file is down and nothing is trying yet."""
        if (
            self.outage.problem is None
            or self._closed
            or (self._retry is not None and not self._retry.done())
        ):
            return
        self._retry = asyncio.ensure_future(self._reopen())

    async def _reopen(self) -> None:
        while self._db is None:
            await asyncio.sleep(self.outage.backoff.wait())
            await self._run(self._open)

    def degraded(self) -> list[str]:
        """Why answers are not kept on disk now (empty when they are)."""
        problem = self.outage.problem
        return [] if problem is None else [f"{problem}; the cache runs from memory"]

    async def aclose(self) -> None:
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
        try:
            await self._run(self._close)
        except RuntimeError:  # at interpreter exit the worker takes no more work: close here
            self._close()
        self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- guarded access -------------------------------------------------------

    async def _call(self, fn: Callable[[sqlite3.Connection], T], default: T) -> T:
        result: T = await self._run(self._guard, fn, default)
        if self._db is None:
            self._keep_trying()
        return result

    def _guard(self, fn: Callable[[sqlite3.Connection], T], default: T) -> T:
        if self._db is None:
            return default
        try:
            return fn(self._db)
        except sqlite3.Error as exc:  # busy, locked, disk full: skip this call
            self.errors += 1
            if is_damaged(exc) and confirmed_damaged(self.path):
                self._rebuild(exc)
            else:
                log.debug("cache: L2 call failed: %s", cause(exc))
            return default

    def _rebuild(self, exc: sqlite3.Error) -> None:
        """The file turned out damaged while running: move it aside and start a new one."""
        self._close()
        try:
            kept = set_aside(self.path)
        except OSError as err:
            self.outage.failed(
                f"the cache file {self.path} is damaged and cannot be moved aside: {cause(err)}"
            )
            return
        log.warning("cache: %s is damaged (%s); moved to %s and starting afresh", self.path, cause(exc), kept)
        self.set_aside.append(kept)
        self._open()

    # -- answers ----------------------------------------------------------------

    async def get(self, key: str) -> tuple[bytes, float] | None:
        return await self._call(lambda db: self._get(db, key), None)

    def _get(self, db: sqlite3.Connection, key: str) -> tuple[bytes, float] | None:
        row = db.execute("SELECT value, expires FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row[1] <= self.clock():
            db.execute("DELETE FROM answers WHERE key = ?", (key,))
            return None
        return bytes(row[0]), float(row[1])

    async def rows(self, keys: list[str]) -> list[AnswerRow]:
        """The unexpired answers among ``keys`` (in no particular order), to warm L1."""
        return await self._call(lambda db: self._rows(db, keys), [])

    def _rows(self, db: sqlite3.Connection, keys: list[str]) -> list[AnswerRow]:
        out: list[AnswerRow] = []
        now = self.clock()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(
                (r[0], r[1], bytes(r[2]), float(r[3]))
                for r in db.execute(
                    f"SELECT key, namespace, value, expires FROM answers WHERE key IN ({marks}) AND expires > ?",
                    (*chunk, now),
                )
            )
        return out

    async def recent(self, max_bytes: int) -> list[AnswerRow]:
        """The most recently written unexpired answers, newest first, up to ``max_bytes`` of values."""
        return await self._call(lambda db: self._recent(db, max_bytes), [])

    def _recent(self, db: sqlite3.Connection, max_bytes: int) -> list[AnswerRow]:
        out: list[AnswerRow] = []
        total = 0
        rows = db.execute(
            "SELECT key, namespace, value, expires FROM answers WHERE expires > ? ORDER BY rowid DESC",
            (self.clock(),),
        )
        for key, namespace, value, expires in rows:
            total += len(value) + len(key)
            if total > max_bytes:
                break
            out.append((key, namespace, bytes(value), float(expires)))
        return out

    async def put(self, key: str, namespace: str, value: bytes, expires: float) -> None:
        await self._call(lambda db: self._put(db, key, namespace, value, expires), None)

    def _put(self, db: sqlite3.Connection, key: str, namespace: str, value: bytes, expires: float) -> None:
        db.execute(
            "INSERT OR REPLACE INTO answers (key, namespace, value, expires) VALUES (?, ?, ?, ?)",
            (key, namespace, value, expires),
        )
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:
            now = self.clock()
            db.execute("DELETE FROM answers WHERE expires <= ?", (now,))
            db.execute("DELETE FROM questions WHERE expires <= ?", (now,))

    async def purge(self, namespace: str) -> set[str]:
        return await self._call(lambda db: self._purge(db, namespace), set())

    def _purge(self, db: sqlite3.Connection, namespace: str) -> set[str]:
        bare = every_tenant(namespace)
        args: tuple[Any, ...]
        if bare is None:
            where, args = "namespace = ?", (namespace,)
        else:  # the namespace in every tenant's space
            suffix = "|" + bare
            where, args = "namespace = ? OR substr(namespace, -?) = ?", (bare, len(suffix), suffix)
        keys = {r[0] for r in db.execute(f"SELECT key FROM answers WHERE {where}", args)}
        db.execute(f"DELETE FROM answers WHERE {where}", args)
        db.execute(f"DELETE FROM questions WHERE {where}", args)
        return keys

    # -- semantic questions -------------------------------------------------------

    async def put_question(self, row: QuestionRow) -> None:
        await self._call(lambda db: self._put_question(db, row), None)

    @staticmethod
    def _put_question(db: sqlite3.Connection, row: QuestionRow) -> None:
        db.execute(
            "INSERT OR REPLACE INTO questions (key, partition, namespace, question, vector, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )

    async def questions(self) -> list[QuestionRow]:
        """Every unexpired semantic question, oldest first (to rebuild the index at start)."""
        return await self._call(self._questions, [])

    def _questions(self, db: sqlite3.Connection) -> list[QuestionRow]:
        rows: Iterable[Any] = db.execute(
            "SELECT key, partition, namespace, question, vector, expires FROM questions "
            "WHERE expires > ? ORDER BY rowid",
            (self.clock(),),
        )
        return [(r[0], r[1], r[2], r[3], bytes(r[4]), float(r[5])) for r in rows]
