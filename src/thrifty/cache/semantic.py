"""The semantic index: past questions by meaning, one vector index per partition.

A partition is everything about a request except its last user turn (see
``keys.partition_key``), so a question is only ever compared with questions
asked after the very same history, by the same tenant, of the same model with
the same parameters. Each entry points at an exact-cache key; the answer
itself lives in the tiered store. Every method is synchronous and thread-safe:
the layer calls them from a worker thread, because embedding is CPU work.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .keys import in_purge
from .vectors import VectorIndex
from .verify import verify

if TYPE_CHECKING:
    from .pairs import PairModel
    from .vectors import Vector

Embed = Callable[[Sequence[str]], Any]
EmbedTokens = Callable[[Sequence[str]], Any]  # texts -> each text's token vectors
_TEXT_CACHE = 4096
_CANDIDATES = 4
_LOCK_WAIT = 0.05


@dataclass(frozen=True, slots=True)
class Question:
    key: str
    namespace: str
    text: str
    expires: float


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    similarity: float  # cosine
    score: float  # what a threshold is compared with: the cosine, or a pair model's probability


class SemanticIndex:
    """Questions with their vectors, searchable within a partition."""

    def __init__(
        self,
        embed: Embed,
        clock: Callable[[], float],
        hnsw_after: int = 20000,
        tokens: EmbedTokens | None = None,
    ) -> None:
        self._embed = embed
        self._tokens = tokens
        self.clock = clock
        self.hnsw_after = hnsw_after
        self._lock = threading.Lock()
        self._parts: dict[str, VectorIndex] = {}
        self._rows: dict[tuple[str, int], Question] = {}
        self._by_key: dict[str, tuple[str, int]] = {}
        self._texts: OrderedDict[str, Vector] = OrderedDict()
        self.rejected = 0  # candidates above the threshold that the verifier turned down
        self.busy = 0  # lookups that gave up waiting for the index (counted as misses)

    def __len__(self) -> int:
        return len(self._rows)

    def vector(self, text: str) -> Vector:
        """The embedding of ``text``; each distinct recent text is embedded once."""
        with self._lock:
            found = self._texts.get(text)
            if found is not None:
                self._texts.move_to_end(text)
                return found
        vector: Vector = self._embed([text])[0]
        with self._lock:
            self._texts[text] = vector
            if len(self._texts) > _TEXT_CACHE:
                self._texts.popitem(last=False)
        return vector

    def lookup(
        self,
        partition: str,
        text: str,
        vector: Vector,
        threshold: float,
        check: bool,
        pairs: PairModel | None = None,
        strict_at: float = 2.0,
    ) -> list[Match]:
        """Candidates at or above ``threshold`` (cosine) that pass the check, best first.

        The check is ``pairs`` when given (its vetoes, then its probability as the
        match's score, compared with a threshold by the caller; a candidate the
        verifier passes at cosine ``strict_at`` scores at least the model's
        threshold), else the verifier.
        """
        now = self.clock()
        # A writer may hold the lock for seconds while a partition moves to HNSW: a miss beats a wait.
        if not self._lock.acquire(timeout=_LOCK_WAIT):
            self.busy += 1
            return []
        try:
            index = self._parts.get(partition)
            if index is None:
                return []
            found: list[tuple[Question, float, Vector | None]] = []
            for label, similarity in index.search(vector, _CANDIDATES):
                question = self._rows.get((partition, label))
                if question is None or similarity < threshold:
                    continue
                if question.expires <= now:
                    self._remove(partition, label)
                    continue
                found.append((question, similarity, index.row(label) if pairs is not None else None))
        finally:
            self._lock.release()
        matches = []
        for question, similarity, other in found:
            score = similarity
            if pairs is not None and other is not None:
                judgement = pairs.judge(text, question.text, vector, other, self._tokens)
                if judgement.refused:
                    self.rejected += 1
                    continue
                score = judgement.score
                if similarity >= strict_at and verify(text, question.text).ok:
                    score = max(score, pairs.threshold)
            elif check and not verify(text, question.text).ok:
                self.rejected += 1
                continue
            matches.append(Match(question.key, similarity, score))
        if pairs is not None:
            matches.sort(key=lambda m: -m.score)
        return matches

    def add(self, partition: str, question: Question, vector: Vector) -> None:
        with self._lock:
            old = self._by_key.pop(question.key, None)
            if old is not None:
                self._remove(*old)
            index = self._parts.get(partition)
            if index is None:
                index = self._parts[partition] = VectorIndex(self.hnsw_after)
            label = index.add(vector)
            self._rows[(partition, label)] = question
            self._by_key[question.key] = (partition, label)

    def forget(self, key: str) -> None:
        """Drop the question that points at ``key`` (its answer is gone)."""
        with self._lock:
            where = self._by_key.pop(key, None)
            if where is not None:
                self._remove(*where)

    def purge(self, namespace: str) -> set[str]:
        with self._lock:
            gone = [(where, q.key) for where, q in self._rows.items() if in_purge(q.namespace, namespace)]
            for where, key in gone:
                self._by_key.pop(key, None)
                self._remove(*where)
        return {key for _, key in gone}

    def _remove(self, partition: str, label: int) -> None:
        question = self._rows.pop((partition, label), None)
        if question is not None and self._by_key.get(question.key) == (partition, label):
            del self._by_key[question.key]
        index = self._parts.get(partition)
        if index is not None:
            index.remove(label)
            if not len(index):
                del self._parts[partition]

    def nbytes(self) -> int:
        """Approximate memory: vectors and graphs, plus the question texts and keys."""
        with self._lock:
            vectors = sum(index.nbytes() for index in self._parts.values())
            texts = sum(len(q.text) + len(q.key) + len(q.namespace) + 200 for q in self._rows.values())
        return vectors + texts
