"""Prompt vectors for the evaluation, cached on disk by content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..vectors import concat, featurizer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

_VERSION = "q800"  # bump when vectors.question_part changes, so old MiniLM caches are not reused


def prompt_vectors(texts: Sequence[str], name: str, cache: Path | None) -> Matrix:
    """Vectors for ``texts`` with featurizer ``name``; reuses ``cache`` when it holds them."""
    import numpy as np

    if name == "minilm+hash":  # both halves come from their own caches
        return concat(prompt_vectors(texts, "minilm", cache), prompt_vectors(texts, "hash", cache))
    salt = _VERSION if name == "minilm" else ""
    digest = hashlib.sha256((salt + "\x00".join(texts)).encode()).hexdigest()[:16]
    path = None if cache is None else cache / f"routing-{name}-{digest}.npy"
    if path is not None and path.exists():
        loaded: Matrix = np.load(path, allow_pickle=False)
        return loaded
    vectors = featurizer(name).transform(list(texts))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors, allow_pickle=False)
    return vectors
