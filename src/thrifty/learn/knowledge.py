"""The knowledge base: answers users rated well, kept with their embeddings, per owner.

An answer rated 4 or 5 (or a corrected answer a user sent) is admitted with
its question's vector. It is offered for reuse only once it has
``min_ratings`` good ratings and is not contradicted: a later rating of 1-2
counts against it and an entry with as many bad ratings as good is removed.
Pruning also drops entries older than ``max_age_s`` and, past ``capacity``
per owner, the worst and oldest. Before reuse an entry must pass two checks:
cosine similarity of the questions at least ``knowledge_similarity``, and the
cache's verifier (:func:`thrifty.cache.verify.verify`: the same content words,
numbers and negations in the same order).

Entries live in a SQLite file (:mod:`thrifty.storage` rules: a damaged file is
set aside, an unavailable one leaves the base in memory and degraded). Every
write bumps a ``version``; each instance reads the rows above the last version
it saw every ``refresh_s`` off the event loop, so instances sharing the file
share what they learn. Lookups read only memory. Entries are keyed by owner
(the key id) and never served to another owner.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..cache.verify import verify
from ..errors import StorageUnavailable
from ..storage import Outage, cause, open_sqlite, wal_setup

if TYPE_CHECKING:
    from .contexts import Vector
    from .settings import LearnSettings

log = logging.getLogger("thrifty.learn")

SCHEMA = """
CREATE TABLE IF NOT EXISTS knowledge (
    id TEXT PRIMARY KEY, owner TEXT NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
    vector BLOB NOT NULL, good REAL NOT NULL DEFAULT 0, bad REAL NOT NULL DEFAULT 0,
    source TEXT NOT NULL, response_id TEXT, created REAL NOT NULL, removed INTEGER NOT NULL DEFAULT 0,
    version INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS knowledge_version ON knowledge (version);
CREATE INDEX IF NOT EXISTS knowledge_response ON knowledge (response_id);
CREATE TABLE IF NOT EXISTS signals (
    id INTEGER PRIMARY KEY, ts REAL NOT NULL, response_id TEXT NOT NULL, owner TEXT NOT NULL,
    end_user TEXT NOT NULL DEFAULT '', kind TEXT NOT NULL, rating REAL, reasons TEXT,
    variant TEXT, context TEXT, route TEXT
);
CREATE INDEX IF NOT EXISTS signals_response ON signals (response_id);
"""
_COLUMNS = (
    "id",
    "owner",
    "question",
    "answer",
    "vector",
    "good",
    "bad",
    "source",
    "response_id",
    "created",
    "removed",
    "version",
)


@dataclass(slots=True)
class Entry:
    id: str
    owner: str
    question: str
    answer: str
    vector: Any
    good: float
    bad: float
    source: str  # "rated" or "corrected"
    response_id: str
    created: float
    removed: bool = False

    @property
    def score(self) -> float:
        return self.good - 2.0 * self.bad


@dataclass(frozen=True, slots=True)
class Match:
    entry: Entry
    similarity: float


def entry_id(owner: str, question: str, answer: str) -> str:
    return hashlib.sha256("\x1f".join((owner, question, answer)).encode()).hexdigest()[:20]


class KnowledgeBase:
    def __init__(
        self, settings: LearnSettings, clock: Callable[[], float] = time.time, *, persist: bool = True
    ) -> None:
        self.settings = settings
        self.persist = persist  # False: entries arrive as journal events; the file keeps only signals
        self.clock = clock
        self.outage = Outage("knowledge base", log)
        self.db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # the connection, used from worker threads
        self._entries: dict[str, dict[str, Entry]] = {}  # owner -> id -> entry (read on the event loop)
        self._matrices: dict[str, tuple[list[Entry], Any]] = {}
        self.seen_version = 0
        self.hits = 0
        self.rejected = 0

    # -- the file ------------------------------------------------------------------

    def open(self) -> None:
        """Open the file (blocking; run in a thread). Failing leaves the base in memory, degraded."""
        try:
            db, _ = open_sqlite("knowledge base", self.settings.path, wal_setup(SCHEMA), timeout=5.0)
        except StorageUnavailable as exc:
            self.outage.failed(exc.message)
            return
        with self._lock:
            self.db = db
        self.outage.recovered()

    def close(self) -> None:
        with self._lock:
            if self.db is not None:
                self.db.close()
                self.db = None

    def degraded(self) -> list[str]:
        return [self.outage.problem] if self.outage.problem else []

    def _write(self, sql: str, args: Callable[[int], tuple[Any, ...]]) -> None:
        """Run one write given a fresh version (blocking); memory stays right if the file fails."""
        with self._lock:
            db = self.db
            if db is None or not self.persist:
                return
            try:
                db.execute("BEGIN IMMEDIATE")
                (version,) = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM knowledge").fetchone()
                db.execute(sql, args(int(version)))
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self.outage.failed(f"knowledge base writes to {self.settings.path} fail: {cause(exc)}")

    def changes(self) -> list[tuple[Any, ...]]:
        """Rows written (by any instance) since the last call (blocking; run in a thread)."""
        if self.db is None and self.outage.backoff.due():
            self.open()
        with self._lock:
            db = self.db
            if db is None or not self.persist:
                return []
            try:
                rows = db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM knowledge WHERE version > ? ORDER BY version",
                    (self.seen_version,),
                ).fetchall()
            except sqlite3.Error as exc:
                self.outage.failed(f"the knowledge base {self.settings.path} cannot be read: {cause(exc)}")
                return []
        return rows

    def apply(self, rows: list[tuple[Any, ...]]) -> None:
        """Fold rows read by :meth:`changes` into memory (on the event loop)."""
        import numpy as np

        for row in rows:
            values = dict(zip(_COLUMNS, row, strict=True))
            self.seen_version = max(self.seen_version, int(values["version"]))
            entry = Entry(
                id=values["id"],
                owner=values["owner"],
                question=values["question"],
                answer=values["answer"],
                vector=np.frombuffer(values["vector"], dtype=np.float32),
                good=float(values["good"]),
                bad=float(values["bad"]),
                source=values["source"],
                response_id=values["response_id"] or "",
                created=float(values["created"]),
                removed=bool(values["removed"]),
            )
            self._put(entry)

    def _put(self, entry: Entry) -> None:
        owned = self._entries.setdefault(entry.owner, {})
        if entry.removed:
            owned.pop(entry.id, None)
        else:
            owned[entry.id] = entry
        self._matrices.pop(entry.owner, None)

    # -- learning (memory now, the file in a thread) --------------------------------

    def admit(
        self,
        owner: str,
        question: str,
        answer: str,
        vector: Vector,
        *,
        response_id: str,
        source: str = "rated",
        good: float = 1.0,
        created: float | None = None,
    ) -> tuple[Entry, Callable[[], None]]:
        """Count a good answer (new or known); returns the entry and the write to run in a thread."""
        key = entry_id(owner, question, answer)
        entry = self._entries.get(owner, {}).get(key)
        if entry is None:
            when = self.clock() if created is None else created
            entry = Entry(key, owner, question, answer, vector, 0.0, 0.0, source, response_id, when)
        entry.good += good
        self._put(entry)
        blob = vector.astype("float32").tobytes()
        sql = (
            f"INSERT INTO knowledge ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
            "ON CONFLICT(id) DO UPDATE SET good = good + excluded.good, removed = 0, version = excluded.version"
        )
        args = (key, owner, question, answer, blob, good, 0.0, source, response_id, entry.created, 0)
        return entry, lambda: self._write(sql, lambda version: (*args, version))

    def contradict(
        self, owner: str, response_id: str = "", entry_key: str = "", weight: float = 1.0
    ) -> Callable[[], None] | None:
        """Evidence against an answer kept (or served) here; the write to run, None if none matched.

        A rating of 1-2 weighs 1, a lukewarm 3 or an implicit signal less; an
        entry with as much evidence against it as for it is removed.
        """
        owned = self._entries.get(owner, {})
        found = owned.get(entry_key) if entry_key else None
        found = found or next(
            (
                e
                for e in owned.values()
                if response_id and e.response_id == response_id and e.source == "rated"
            ),
            None,
        )
        if found is None:
            return None
        found.bad += weight
        found.removed = found.bad >= found.good
        self._put(found)
        sql = "UPDATE knowledge SET bad = bad + ?, removed = (bad + ? >= good), version = ? WHERE id = ?"
        key = found.id
        return lambda: self._write(sql, lambda version: (weight, weight, version, key))

    def prune(self) -> list[Callable[[], None]]:
        """Drop entries aged out, and past capacity the worst then oldest; the writes to run."""
        now = self.clock()
        gone: list[Entry] = []
        for owned in self._entries.values():
            old = [e for e in owned.values() if now - e.created > self.settings.max_age_s]
            keep = sorted((e for e in owned.values() if e not in old), key=lambda e: (e.score, e.created))
            excess = len(keep) - self.settings.capacity
            gone.extend(old + (keep[:excess] if excess > 0 else []))
        for entry in gone:
            entry.removed = True
            self._put(entry)
        sql = "UPDATE knowledge SET removed = 1, version = ? WHERE id = ?"
        return [self._removal(sql, e.id) for e in gone]

    def _removal(self, sql: str, key: str) -> Callable[[], None]:
        return lambda: self._write(sql, lambda version: (version, key))

    # -- reuse (memory only: the hot path) ------------------------------------------

    def lookup(self, owner: str, question: str, vector: Vector) -> Match | None:
        """The best validated entry of ``owner`` for ``question``, if one passes both checks."""
        import numpy as np

        cached = self._matrices.get(owner)
        if cached is None:
            usable = [
                e
                for e in self._entries.get(owner, {}).values()
                if e.good >= self.settings.min_ratings and not e.removed
            ]
            cached = (usable, np.stack([e.vector for e in usable]) if usable else None)
            self._matrices[owner] = cached
        entries, matrix = cached
        if matrix is None:
            return None
        scores = matrix @ vector
        for index in np.argsort(-scores)[:5]:
            similarity = float(scores[index])
            if similarity < self.settings.knowledge_similarity:
                break
            entry = entries[int(index)]
            if (
                entry.question == question
                or not self.settings.knowledge_verify
                or verify(question, entry.question).ok
            ):
                self.hits += 1
                return Match(entry, similarity)
            self.rejected += 1
        return None

    def get(self, owner: str, key: str) -> Entry | None:
        return self._entries.get(owner, {}).get(key)

    def size(self, owner: str | None = None) -> int:
        if owner is not None:
            return len(self._entries.get(owner, {}))
        return sum(len(v) for v in self._entries.values())

    # -- the signal log --------------------------------------------------------------

    def log_signal(self, values: dict[str, Any]) -> None:
        """Keep one signal with its link to the ledger row, route and variant (blocking)."""
        keys = (
            "ts",
            "response_id",
            "owner",
            "end_user",
            "kind",
            "rating",
            "reasons",
            "variant",
            "context",
            "route",
        )
        with self._lock:
            db = self.db
            if db is None:
                return
            try:
                db.execute(
                    f"INSERT INTO signals ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                    tuple(values.get(k) for k in keys),
                )
            except sqlite3.Error as exc:
                self.outage.failed(f"knowledge base writes to {self.settings.path} fail: {cause(exc)}")

    def signals(self, response_id: str) -> list[dict[str, Any]]:
        with self._lock:
            if self.db is None:
                return []
            cur = self.db.execute("SELECT * FROM signals WHERE response_id = ? ORDER BY id", (response_id,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
