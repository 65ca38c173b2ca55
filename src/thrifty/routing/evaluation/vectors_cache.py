"""Prompt vectors for the evaluation, cached on disk by content hash."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..vectors import featurizer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

TAIL_CHARS = 1500  # MiniLM reads 256 tokens: keep the end of long few-shot prompts, where the question is


def tail(text: str) -> str:
    return text if len(text) <= TAIL_CHARS else text[-TAIL_CHARS:]


def prompt_vectors(texts: Sequence[str], name: str, cache: Path | None) -> Matrix:
    """Vectors for ``texts`` with featurizer ``name``; reuses ``cache`` when it holds them."""
    import numpy as np

    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = None if cache is None else cache / f"routing-{name}-{digest}.npy"
    if path is not None and path.exists():
        loaded: Matrix = np.load(path, allow_pickle=False)
        return loaded
    inputs = [tail(t) for t in texts] if name == "minilm" else list(texts)
    vectors = featurizer(name).transform(inputs)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vectors, allow_pickle=False)
    return vectors
