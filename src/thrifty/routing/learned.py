"""A router fitted on outcome data: predicts each model's quality on a prompt.

The estimate of P(correct | prompt, model) blends two cheap predictors over
prompt vectors: k nearest training prompts (cosine similarity, shrunk toward
the model's mean) and a ridge regression. Choosing a model is then the
cheapest whose predicted quality clears a target, or the best
``quality - cost_weight * relative cost``. Fitting takes well under a second
on a few thousand prompts; the result is an ``.npz`` file (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .vectors import Featurizer, featurizer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

FORMAT = "thrifty-router/1"


@dataclass
class LearnedModel:
    """Fitted arrays plus the settings needed to use them."""

    models: tuple[str, ...]
    featurizer_name: str
    dim: int
    vectors: Matrix  # (n, d) training prompts, unit rows
    outcomes: Matrix  # (n, m) quality of each model on each training prompt
    weights: Matrix  # (d + 1, m) ridge weights, last row the bias
    mean_cost: Matrix  # (m,) average USD per prompt on the training data
    k: int = 24
    blend: float = 0.5  # share of kNN in the estimate; the rest is ridge

    def featurizer(self) -> Featurizer:
        return featurizer(self.featurizer_name, self.dim)

    def predict(self, vectors: Matrix) -> Matrix:
        """(n, m) predicted quality for prompt vectors (n, d)."""
        import numpy as np

        knn = self._knn(vectors)
        ridge = np.clip(vectors @ self.weights[:-1] + self.weights[-1], 0.0, 1.0)
        out: Matrix = (self.blend * knn + (1.0 - self.blend) * ridge).astype(np.float32)
        return out

    def predict_texts(self, texts: Sequence[str]) -> Matrix:
        return self.predict(self.featurizer().transform(texts))

    def _knn(self, vectors: Matrix) -> Matrix:
        import numpy as np

        sims = vectors @ self.vectors.T
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        near = np.take_along_axis(sims, idx, axis=1)
        w = np.maximum(near, 0.0) ** 4  # sharpen toward the closest prompts
        prior = self.outcomes.mean(axis=0)
        shrink = 0.5
        num = np.einsum("nk,nkm->nm", w, self.outcomes[idx]) + shrink * prior
        den = w.sum(axis=1, keepdims=True) + shrink
        out: Matrix = (num / den).astype(np.float32)
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        import numpy as np

        meta = {"format": FORMAT, "featurizer": self.featurizer_name, "dim": self.dim,
                "k": self.k, "blend": self.blend}
        np.savez_compressed(
            path,
            meta=np.array(json.dumps(meta)),
            models=np.array(self.models),
            vectors=self.vectors.astype(np.float16),
            outcomes=self.outcomes.astype(np.float16),
            weights=self.weights,
            mean_cost=self.mean_cost,
        )


def load(path: str | os.PathLike[str]) -> LearnedModel:
    """Read a fitted router; raises ValueError when the file is not one."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            meta: dict[str, Any] = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise ValueError(f"{path}: not a thrifty router file (format {meta.get('format')!r})")
            model = LearnedModel(
                models=tuple(str(m) for m in data["models"]),
                featurizer_name=str(meta["featurizer"]),
                dim=int(meta["dim"]),
                vectors=data["vectors"].astype(np.float32),
                outcomes=data["outcomes"].astype(np.float32),
                weights=data["weights"].astype(np.float32),
                mean_cost=data["mean_cost"].astype(np.float32),
                k=int(meta["k"]),
                blend=float(meta["blend"]),
            )
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: fitted router file not found") from exc
    except Exception as exc:  # numpy raises ValueError, BadZipFile, KeyError... on corrupt files
        raise ValueError(f"{path}: corrupt fitted router ({type(exc).__name__}: {exc})") from exc
    if model.vectors.shape[0] != model.outcomes.shape[0] or model.outcomes.shape[1] != len(model.models):
        raise ValueError(f"{path}: fitted router arrays do not agree in shape")
    return model


def fit(
    vectors: NDArray[Any],
    outcomes: NDArray[Any],
    models: Sequence[str],
    *,
    costs: NDArray[Any] | None = None,
    featurizer_name: str = "hash",
    dim: int = 2048,
    k: int = 40,
    blend: float = 0.5,
    ridge: float = 1.0,
) -> LearnedModel:
    """Fit on prompt vectors (n, d) and observed quality (n, m) in [0, 1]."""
    import numpy as np

    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    mean = y.mean(axis=0)
    # ridge on centred targets, intercept = mean quality
    gram = x.T @ x + ridge * np.eye(x.shape[1])
    w = np.linalg.solve(gram, x.T @ (y - mean))
    weights = np.vstack([w, mean[None, :]]).astype(np.float32)
    cost = np.zeros(len(models), np.float32) if costs is None else np.asarray(costs).mean(axis=0)
    return LearnedModel(
        models=tuple(models),
        featurizer_name=featurizer_name,
        dim=int(x.shape[1]) if featurizer_name == "hash" else dim,
        vectors=x.astype(np.float32),
        outcomes=y.astype(np.float32),
        weights=weights,
        mean_cost=cost.astype(np.float32),
        k=k,
        blend=blend,
    )


def choose(
    quality: Sequence[float],
    costs: Sequence[float],
    *,
    quality_target: float | None = None,
    cost_weight: float | None = None,
) -> int:
    """Index of the model to call given predicted quality and relative costs.

    With ``cost_weight`` the best ``quality - cost_weight * cost / max(cost)``;
    otherwise the cheapest model predicted to clear ``quality_target``, or the
    best predicted model when none does.
    """
    n = len(quality)
    top = max(costs) or 1.0
    if cost_weight is not None:
        return max(range(n), key=lambda i: (quality[i] - cost_weight * costs[i] / top, -costs[i]))
    target = 0.7 if quality_target is None else quality_target
    clearing = [i for i in range(n) if quality[i] >= target]
    if clearing:
        return min(clearing, key=lambda i: (costs[i], -quality[i]))
    return max(range(n), key=lambda i: (quality[i], -costs[i]))
