"""L2: answers on local disk in SQLite (WAL), surviving restarts.

Every call runs on one dedicated thread, so the event loop never waits on the
disk. A file that is not a database, or turns out damaged, is renamed aside
(``<name>.corrupt-<time>``) and a fresh one is created: a bad cache file costs
the cached answers, never the gateway's startup.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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


class DiskLevel:
    """A SQLite file of answers (and semantic questions), used from one worker thread."""

    def __init__(self, path: str, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.errors = 0
        self.set_aside: list[str] = []
        self._db: sqlite3.Connection | None = None
        self._writes = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thrifty-cache-l2")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- lifecycle ------------------------------------------------------------

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            self._set_aside(exc)
            self._db = self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("SELECT count(*) FROM answers").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _set_aside(self, exc: BaseException) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        aside = f"{self.path}.corrupt-{int(time.time())}"
        log.warning("cache: %s is damaged (%s); moved to %s and starting afresh", self.path, exc, aside)
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(self.path + suffix):
                os.replace(self.path + suffix, aside + suffix)
        self.set_aside.append(aside)

    async def aclose(self) -> None:
        await self._run(self._close)
        self._pool.shutdown(wait=True)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- guarded access -------------------------------------------------------

    def _guard(self, fn: Callable[[sqlite3.Connection], T], default: T) -> T:
        if self._db is None:
            return default
        try:
            return fn(self._db)
        except sqlite3.OperationalError as exc:  # busy, locked, disk full: skip this call
            self.errors += 1
            log.debug("cache: L2 call failed: %s", exc)
            return default
        except sqlite3.DatabaseError as exc:  # malformed: rebuild the file
            self.errors += 1
            self._set_aside(exc)
            self._db = self._connect()
            return default

    # -- answers ----------------------------------------------------------------

    async def get(self, key: str) -> tuple[bytes, float] | None:
        return await self._run(self._guard, lambda db: self._get(db, key), None)

    def _get(self, db: sqlite3.Connection, key: str) -> tuple[bytes, float] | None:
        row = db.execute("SELECT value, expires FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        if row[1] <= self.clock():
            db.execute("DELETE FROM answers WHERE key = ?", (key,))
            return None
        return bytes(row[0]), float(row[1])

    async def put(self, key: str, namespace: str, value: bytes, expires: float) -> None:
        await self._run(self._guard, lambda db: self._put(db, key, namespace, value, expires), None)

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
        return await self._run(self._guard, lambda db: self._purge(db, namespace), set())

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
        await self._run(self._guard, lambda db: self._put_question(db, row), None)

    @staticmethod
    def _put_question(db: sqlite3.Connection, row: QuestionRow) -> None:
        db.execute(
            "INSERT OR REPLACE INTO questions (key, partition, namespace, question, vector, expires) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )

    async def questions(self) -> list[QuestionRow]:
        """Every unexpired semantic question, oldest first (to rebuild the index at start)."""
        return await self._run(self._guard, self._questions, [])

    def _questions(self, db: sqlite3.Connection) -> list[QuestionRow]:
        rows: Iterable[Any] = db.execute(
            "SELECT key, partition, namespace, question, vector, expires FROM questions "
            "WHERE expires > ? ORDER BY rowid",
            (self.clock(),),
        )
        return [(r[0], r[1], r[2], r[3], bytes(r[4]), float(r[5])) for r in rows]
