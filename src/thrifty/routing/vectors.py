"""Turning prompts into vectors for the learned router.

Two featurizers, both unit-norm rows: ``minilm`` (all-MiniLM-L6-v2 sentence
embeddings from :mod:`thrifty.embeddings`) and ``hash`` (hashed word unigrams
and bigrams, pure numpy, no model at all). numpy is imported lazily.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

Embed = Callable[[Sequence[str]], Any]  # texts -> (n, 384) unit vectors
FEATURIZERS = ("hash", "minilm", "minilm+hash")
MINILM_DIM = 384
_TOKEN = re.compile(r"[a-z0-9]+")
TAIL_CHARS = 800  # MiniLM reads 256 tokens at most; a few-shot prompt's question is at its end
_DEMO_END = re.compile(r"Answer:\s*\S{1,3}\s*\n\n")


def question_part(text: str) -> str:
    """What MiniLM reads: text after a few-shot prompt's last worked answer, at most TAIL_CHARS from the end."""
    ends = list(_DEMO_END.finditer(text))
    if ends:
        text = text[ends[-1].end() :]
    return text if len(text) <= TAIL_CHARS else text[-TAIL_CHARS:]


class Featurizer(Protocol):
    name: str

    def transform(self, texts: Sequence[str]) -> Matrix: ...


class HashingFeaturizer:
    """Hashed, sublinear-tf word unigrams and bigrams, L2-normalised."""

    name = "hash"

    def __init__(self, dim: int = 2048) -> None:
        self.dim = dim

    def transform(self, texts: Sequence[str]) -> Matrix:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = _TOKEN.findall(text.lower()[:20_000])
            grams = tokens + [a + " " + b for a, b in zip(tokens, tokens[1:], strict=False)]
            for gram in grams:
                out[row, zlib.crc32(gram.encode()) % self.dim] += 1.0
        np.log1p(out, out=out)
        return _unit_rows(out)


class MiniLMFeaturizer:
    """all-MiniLM-L6-v2 sentence embeddings (384 dims) of each prompt's :func:`question_part`.

    ``embed`` is the owner's embedding model (the stack's, when serving); without
    one the featurizer owns a model of its own, loaded on first use.
    """

    name = "minilm"

    def __init__(self, embed: Embed | None = None) -> None:
        if embed is None:
            from ..embeddings import EmbeddingModel  # type: ignore[import-not-found,unused-ignore]

            embed = EmbeddingModel().embed
        self.embed = embed

    def transform(self, texts: Sequence[str]) -> Matrix:
        import numpy as np

        vectors = np.asarray(self.embed([question_part(t) for t in texts]), dtype=np.float32)
        return _unit_rows(vectors)


class ConcatFeaturizer:
    """MiniLM and hashed words side by side, each half scaled so the row stays unit-norm."""

    name = "minilm+hash"

    def __init__(self, dim: int = 2048, embed: Embed | None = None) -> None:
        self.minilm = MiniLMFeaturizer(embed)
        self.hashing = HashingFeaturizer(dim)

    def transform(self, texts: Sequence[str]) -> Matrix:
        return concat(self.minilm.transform(texts), self.hashing.transform(texts))


def concat(minilm: Matrix, hashed: Matrix) -> Matrix:
    """Rows of two unit-norm blocks joined and scaled by 1/sqrt(2): cosine is the mean of both cosines."""
    import numpy as np

    out: Matrix = (np.hstack([minilm, hashed]) / np.sqrt(2.0)).astype(np.float32)
    return out


def featurizer(name: str, dim: int = 2048, embed: Embed | None = None) -> Featurizer:
    """``dim`` is the hashed part's width (``hash`` and ``minilm+hash``); ``embed`` the MiniLM to use."""
    if name == "hash":
        return HashingFeaturizer(dim)
    if name == "minilm":
        return MiniLMFeaturizer(embed)
    if name == "minilm+hash":
        return ConcatFeaturizer(dim, embed)
    raise ValueError(f"unknown featurizer {name!r}; expected one of {', '.join(FEATURIZERS)}")


def _unit_rows(matrix: Matrix) -> Matrix:
    import numpy as np

    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Matrix = (matrix / norms).astype(np.float32)
    return out
