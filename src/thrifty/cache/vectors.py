"""Nearest questions by cosine: brute force while small, hnswlib once large.

Vectors are unit-norm float32, so cosine is a dot product. A partition starts
as a growing numpy matrix (exact, and fastest below a few tens of thousands of
rows); past ``hnsw_after`` rows it moves to an HNSW graph (approximate,
logarithmic). Removed rows are masked out, never compacted in place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector = NDArray[np.float32]

DIM = 384
_M = 16
_EF_CONSTRUCTION = 100
_EF_SEARCH = 64


class VectorIndex:
    """Rows identified by int labels; ``search`` returns (label, similarity) best first."""

    def __init__(self, hnsw_after: int, dim: int = DIM) -> None:
        import numpy as np

        self.dim = dim
        self.hnsw_after = hnsw_after
        self._matrix = np.zeros((16, dim), dtype=np.float32)
        self._alive = np.zeros(16, dtype=bool)
        self._count = 0  # rows used in the matrix (alive or not)
        self._hnsw: Any = None
        self._live = 0

    def __len__(self) -> int:
        return self._live

    @property
    def kind(self) -> str:
        return "hnsw" if self._hnsw is not None else "flat"

    def add(self, vector: Vector) -> int:
        """Add a row; its label."""
        label = self._count
        if label >= len(self._alive):
            self._grow()
        self._alive[label] = True
        self._count += 1
        self._live += 1
        if self._hnsw is not None:
            if self._count > self._hnsw.get_max_elements():
                self._hnsw.resize_index(len(self._alive))
            self._hnsw.add_items(vector[None, :], [label])
            return label
        self._matrix[label] = vector
        if self._live > self.hnsw_after:
            self._build_hnsw()
        return label

    def remove(self, label: int) -> None:
        if 0 <= label < self._count and self._alive[label]:
            self._alive[label] = False
            self._live -= 1
            if self._hnsw is not None:
                self._hnsw.mark_deleted(label)

    def search(self, vector: Vector, k: int) -> list[tuple[int, float]]:
        import numpy as np

        if not self._live:
            return []
        k = min(k, self._live)
        if self._hnsw is not None:
            self._hnsw.set_ef(max(_EF_SEARCH, k))
            labels, distances = self._hnsw.knn_query(vector[None, :], k=k)
            return [(int(lbl), 1.0 - float(d)) for lbl, d in zip(labels[0], distances[0], strict=True)]
        scores = self._matrix[: self._count] @ vector
        scores[~self._alive[: self._count]] = -2.0
        top = np.argpartition(-scores, k - 1)[:k] if k < self._count else np.arange(self._count)
        top = top[np.argsort(-scores[top])]
        return [(int(i), float(scores[i])) for i in top if self._alive[i]]

    def row(self, label: int) -> Vector:
        """The vector stored under ``label`` (a copy)."""
        import numpy as np

        if self._hnsw is not None:
            out: Vector = np.asarray(self._hnsw.get_items([label])[0], dtype=np.float32)
        else:
            out = np.array(self._matrix[label], dtype=np.float32)
        return out

    def _grow(self) -> None:
        import numpy as np

        size = len(self._alive) * 2
        alive = np.zeros(size, dtype=bool)
        alive[: self._count] = self._alive[: self._count]
        self._alive = alive
        if self._hnsw is None:
            matrix = np.zeros((size, self.dim), dtype=np.float32)
            matrix[: self._count] = self._matrix[: self._count]
            self._matrix = matrix

    def _build_hnsw(self) -> None:
        try:
            import hnswlib
        except ImportError:  # stay exact (slower when large) without the optional package
            self.hnsw_after = 1 << 62
            return
        import numpy as np

        index = hnswlib.Index(space="ip", dim=self.dim)
        index.init_index(max_elements=len(self._matrix), ef_construction=_EF_CONSTRUCTION, M=_M)
        labels = np.flatnonzero(self._alive[: self._count])
        index.add_items(self._matrix[labels], labels)
        self._hnsw = index
        self._matrix = np.zeros((0, self.dim), dtype=np.float32)  # the graph holds the vectors now

    def nbytes(self) -> int:
        """Memory held by vectors, flags and (estimated) graph links."""
        if self._hnsw is None:
            return int(self._matrix.nbytes + self._alive.nbytes)
        per_row = self.dim * 4 + _M * 2 * 4 + 8 + 8  # vector, level-0 links, label, list head
        return int(len(self._alive) * per_row + self._alive.nbytes)
