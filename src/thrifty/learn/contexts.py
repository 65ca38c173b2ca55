"""Contexts: clusters of request embeddings, so what is learned for one question carries to similar ones.

Online leader clustering per owner: a request joins the nearest context whose
centroid is within ``context_similarity`` (cosine), and moves that centroid a
little towards itself; otherwise it starts a new context. Past
``max_contexts`` a request joins the nearest context whatever the distance.
Owners never share contexts. A context is named after its first request's
vector (a hash), so replicas that meet the same question name it alike, and a
context found by another replica (:meth:`Contexts.add`) joins under its name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector = NDArray[np.float32]


@dataclass(slots=True)
class _Owner:
    ids: list[str] = field(default_factory=list)
    centroids: list[Any] = field(default_factory=list)  # unit vectors
    counts: list[int] = field(default_factory=list)
    matrix: Any = None  # the centroids stacked, rebuilt when they change


class Contexts:
    def __init__(self, similarity: float, most: int) -> None:
        self.similarity = similarity
        self.most = most
        self._owners: dict[str, _Owner] = {}

    def assign(self, owner: str, vector: Vector) -> tuple[str, bool]:
        """The id of the context ``vector`` belongs to, and whether it is new (created if none is near)."""
        import numpy as np

        state = self._owners.setdefault(owner, _Owner())
        if state.centroids:
            if state.matrix is None:
                state.matrix = np.stack(state.centroids)
            scores = state.matrix @ vector
            best = int(scores.argmax())
            if float(scores[best]) >= self.similarity or len(state.centroids) >= self.most:
                self._move(state, best, vector)
                return state.ids[best], False
        name = (
            "c" + hashlib.blake2b(np.asarray(vector, dtype=np.float32).tobytes(), digest_size=4).hexdigest()
        )
        return name, self.add(owner, name, vector)

    def add(self, owner: str, name: str, vector: Vector) -> bool:
        """Know the context ``name`` (found here or by another replica); False if already known."""
        import numpy as np

        state = self._owners.setdefault(owner, _Owner())
        if name in state.ids:
            return False
        state.ids.append(name)
        state.centroids.append(np.array(vector, dtype=np.float32))
        state.counts.append(1)
        state.matrix = None
        return True

    @staticmethod
    def _move(state: _Owner, index: int, vector: Vector) -> None:
        import numpy as np

        state.counts[index] += 1
        rate = 1.0 / min(state.counts[index], 50)  # a running mean that keeps adapting slowly
        moved = (1.0 - rate) * state.centroids[index] + rate * vector
        state.centroids[index] = (moved / max(float(np.linalg.norm(moved)), 1e-12)).astype(np.float32)
        state.matrix = None

    def count(self, owner: str) -> int:
        state = self._owners.get(owner)
        return len(state.centroids) if state else 0
