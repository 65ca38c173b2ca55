"""A router fitted on outcome data: predicts each model's quality on a prompt.

The estimate of P(correct | prompt, model) averages up to three cheap
predictors over unit-norm prompt vectors: the k nearest training prompts
(cosine similarity, shrunk toward the model's mean), a linear model (ridge
or per-model logistic regression), and the mean outcome of the prompt's
k-means cluster. Which of them, and their settings, is a :class:`Recipe`;
``RECIPES`` holds the ones chosen on a validation split for each featurizer.
Choosing a model is then the cheapest whose predicted quality clears a
target, or the best ``quality - cost_weight * relative cost``. Fitting takes
seconds on a few thousand prompts; the result is an ``.npz`` file (no pickle).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from . import estimators as E
from .vectors import MINILM_DIM, Embed, Featurizer, featurizer

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float32]

FORMAT = "thrifty-router/2"
_READABLE = ("thrifty-router/1", FORMAT)


@dataclass(frozen=True)
class Recipe:
    """How the quality estimate is built: kNN, linear and cluster parts and their shares."""

    k: int = 40
    power: float = 4.0  # similarity weights are sim ** power
    linear: str = "ridge"  # or "logistic"
    l2: float = 1.0
    clusters: int = 0  # k-means clusters for a per-cluster prior; 0: none
    shares: tuple[float, float, float] = (0.5, 0.5, 0.0)  # knn, linear, cluster


RECIPES = {
    "hash": Recipe(),
    # chosen on a 20% validation split of the RouterBench train file (docs/bench/routing.md)
    "minilm": Recipe(k=160, power=1.0, linear="logistic", l2=10.0, clusters=8, shares=(1 / 3, 1 / 3, 1 / 3)),
    # 2,432 dims: ridge has a closed form where logistic regression would take minutes
    "minilm+hash": Recipe(k=160, power=1.0, linear="ridge", l2=1.0, clusters=8, shares=(1 / 3, 1 / 3, 1 / 3)),
}


@dataclass
class LearnedModel:
    """Fitted arrays plus the settings needed to use them."""

    models: tuple[str, ...]
    featurizer_name: str
    dim: int
    vectors: Matrix  # (n, d) training prompts, unit rows
    outcomes: Matrix  # (n, m) quality of each model on each training prompt
    weights: Matrix  # (d + 1, m) linear weights, last row the bias
    mean_cost: Matrix  # (m,) average USD per prompt on the training data
    recipe: Recipe = Recipe()
    centroids: Matrix | None = None  # (c, d) k-means centres when recipe.clusters
    cluster_quality: Matrix | None = None  # (c, m) shrunk mean outcome per cluster
    cost_weight: float | None = None  # λ chosen by cross-validation when fitted (the runtime default)

    def featurizer(self, embed: Embed | None = None) -> Featurizer:
        """The featurizer this model was fitted with; ``embed`` is the MiniLM to use."""
        return featurizer(self.featurizer_name, self.dim, embed)

    def predict(self, vectors: Matrix) -> Matrix:
        """(n, m) predicted quality for prompt vectors (n, d)."""
        import numpy as np

        r = self.recipe
        total = np.zeros((len(vectors), len(self.models)))
        if r.shares[0]:
            total += r.shares[0] * _knn(vectors, self.vectors, self.outcomes, r.k, r.power)
        if r.shares[1]:
            total += r.shares[1] * E.linear_predict(vectors, self.weights, r.linear)
        if r.shares[2] and self.centroids is not None and self.cluster_quality is not None:
            total += r.shares[2] * self.cluster_quality[E.assign(vectors, self.centroids)]
        out: Matrix = (total / sum(r.shares)).astype(np.float32)
        return out

    def predict_texts(self, texts: Sequence[str], using: Featurizer | None = None) -> Matrix:
        """Predicted quality for prompts, featurized by ``using`` (default: a new featurizer)."""
        return self.predict((using or self.featurizer()).transform(texts))

    def save(self, path: str | os.PathLike[str]) -> None:
        import numpy as np

        r = self.recipe
        meta = {
            "format": FORMAT,
            "featurizer": self.featurizer_name,
            "dim": self.dim,
            "k": r.k,
            "power": r.power,
            "linear": r.linear,
            "l2": r.l2,
            "clusters": r.clusters,
            "shares": list(r.shares),
            "cost_weight": self.cost_weight,
        }
        arrays: dict[str, Any] = {
            "meta": np.array(json.dumps(meta)),
            "models": np.array(self.models),
            "vectors": self.vectors.astype(np.float16),
            "outcomes": self.outcomes.astype(np.float16),
            "weights": self.weights,
            "mean_cost": self.mean_cost,
        }
        if self.centroids is not None and self.cluster_quality is not None:
            arrays["centroids"] = self.centroids.astype(np.float32)
            arrays["cluster_quality"] = self.cluster_quality.astype(np.float32)
        np.savez_compressed(path, **arrays)


def load(path: str | os.PathLike[str]) -> LearnedModel:
    """Read a fitted router; raises ValueError when the file is not one."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            meta: dict[str, Any] = json.loads(str(data["meta"]))
            if meta.get("format") not in _READABLE:
                raise ValueError(f"{path}: not a thrifty router file (format {meta.get('format')!r})")
            clustered = "centroids" in data.files and "cluster_quality" in data.files
            model = LearnedModel(
                models=tuple(str(m) for m in data["models"]),
                featurizer_name=str(meta["featurizer"]),
                dim=int(meta["dim"]),
                vectors=data["vectors"].astype(np.float32),
                outcomes=data["outcomes"].astype(np.float32),
                weights=data["weights"].astype(np.float32),
                mean_cost=data["mean_cost"].astype(np.float32),
                recipe=_recipe(meta),
                centroids=data["centroids"].astype(np.float32) if clustered else None,
                cluster_quality=data["cluster_quality"].astype(np.float32) if clustered else None,
                cost_weight=_cost_weight(meta.get("cost_weight")),
            )
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: fitted router file not found") from exc
    except Exception as exc:  # numpy raises ValueError, BadZipFile, KeyError... on corrupt files
        raise ValueError(f"{path}: corrupt fitted router ({type(exc).__name__}: {exc})") from exc
    _check_shapes(model, str(path))
    return model


def _cost_weight(raw: Any) -> float | None:
    if raw is None:
        return None
    if not isinstance(raw, (int, float)) or isinstance(raw, bool) or raw < 0:
        raise ValueError(f"bad cost_weight {raw!r}")
    return float(raw)


def _recipe(meta: dict[str, Any]) -> Recipe:
    if meta["format"] == "thrifty-router/1":  # kNN + ridge blend
        blend = float(meta["blend"])
        return Recipe(k=int(meta["k"]), shares=(blend, 1.0 - blend, 0.0))
    shares = tuple(float(s) for s in meta["shares"])
    if len(shares) != 3 or min(shares) < 0 or sum(shares) <= 0 or meta["linear"] not in ("ridge", "logistic"):
        raise ValueError(f"bad recipe {meta!r}")
    return Recipe(
        k=int(meta["k"]),
        power=float(meta["power"]),
        linear=str(meta["linear"]),
        l2=float(meta["l2"]),
        clusters=int(meta["clusters"]),
        shares=(shares[0], shares[1], shares[2]),
    )


def _check_shapes(model: LearnedModel, path: str) -> None:
    n, d = model.vectors.shape
    m = len(model.models)
    ok = model.outcomes.shape == (n, m) and model.weights.shape == (d + 1, m)
    if model.centroids is not None and model.cluster_quality is not None:
        ok = ok and model.centroids.shape[1] == d and model.cluster_quality.shape == (len(model.centroids), m)
    if not ok:
        raise ValueError(f"{path}: fitted router arrays do not agree in shape")


def fit(
    vectors: NDArray[Any],
    outcomes: NDArray[Any],
    models: Sequence[str],
    *,
    costs: NDArray[Any] | None = None,
    featurizer_name: str = "hash",
    dim: int = 2048,
    recipe: Recipe | None = None,
    k: int | None = None,
) -> LearnedModel:
    """Fit on prompt vectors (n, d) and observed quality (n, m) in [0, 1].

    A NaN in ``outcomes`` is an outcome not observed (the gateway's own history
    has one or two models per prompt): each model's estimators then use only the
    rows where it was observed. ``recipe`` defaults to ``RECIPES[featurizer_name]``;
    ``k`` overrides its kNN size.
    """
    import numpy as np

    r = recipe or RECIPES.get(featurizer_name, Recipe())
    if k is not None:
        r = replace(r, k=k)
    x = np.asarray(vectors, dtype=np.float64)
    y = np.asarray(outcomes, dtype=np.float64)
    seen = [bool((~np.isnan(y[:, j])).any()) for j in range(y.shape[1])]
    if not all(seen):
        unseen = [m for m, s in zip(models, seen, strict=True) if not s]
        raise ValueError(f"no observed outcome for {', '.join(unseen)}")
    weights = _per_model(
        x, y, lambda xs, ys: E.logistic(xs, ys, r.l2) if r.linear == "logistic" else E.ridge(xs, ys, r.l2)
    )
    centroids = quality = None
    clusters = min(r.clusters, len(x))
    if clusters and r.shares[2]:
        centroids = E.kmeans(x, clusters)
        labels = E.assign(x, centroids)
        quality = _per_model(labels, y, lambda ls, ys: E.cluster_means(ls, ys, clusters))
        r = replace(r, clusters=clusters)
    cost = np.zeros(len(models)) if costs is None else np.asarray(costs).mean(axis=0)
    return LearnedModel(
        models=tuple(models),
        featurizer_name=featurizer_name,
        dim=_hash_width(featurizer_name, int(x.shape[1]), dim),
        vectors=x.astype(np.float32),
        outcomes=y.astype(np.float32),
        weights=weights.astype(np.float32),
        mean_cost=cost.astype(np.float32),
        recipe=r,
        centroids=None if centroids is None else centroids.astype(np.float32),
        cluster_quality=None if quality is None else quality.astype(np.float32),
    )


def _per_model(x: NDArray[Any], y: NDArray[Any], estimate: Callable[[Any, Any], Any]) -> NDArray[Any]:
    """``estimate(x, y)`` for all models at once; with unobserved outcomes (NaN), per model on its
    observed rows only, the columns stacked."""
    import numpy as np

    observed = ~np.isnan(y)
    if observed.all():
        out: NDArray[Any] = estimate(x, y)
        return out
    return np.hstack([estimate(x[observed[:, j]], y[observed[:, j], j : j + 1]) for j in range(y.shape[1])])


def _knn(query: Any, x: NDArray[Any], y: NDArray[Any], k: int, power: float) -> NDArray[Any]:
    """kNN estimate per model; a model's neighbours are the training rows where it was observed."""
    import numpy as np

    observed = ~np.isnan(y)
    if observed.all():
        return E.knn(query, x, y, k, power)
    return np.hstack(
        [E.knn(query, x[observed[:, j]], y[observed[:, j], j : j + 1], k, power) for j in range(y.shape[1])]
    )


def _hash_width(featurizer_name: str, width: int, default: int) -> int:
    if featurizer_name == "hash":
        return width
    if featurizer_name == "minilm+hash":
        return width - MINILM_DIM
    return default


def tune_k(
    vectors: NDArray[Any],
    outcomes: NDArray[Any],
    ks: Sequence[int] = (10, 20, 40, 80, 160, 320),
    *,
    holdout: float = 0.2,
    seed: int = 0,
    power: float = 1.0,
) -> dict[int, float]:
    """kNN log loss on a held-out share of the rows for each k (fit on the rest); lower is better."""
    import numpy as np

    n = len(vectors)
    rows = np.random.default_rng(seed).permutation(n)
    val = np.zeros(n, dtype=bool)
    val[rows[: max(1, int(n * holdout))]] = True
    x, y = np.asarray(vectors, np.float64), np.asarray(outcomes, np.float64)
    return {k: E.log_loss(E.knn(x[val], x[~val], y[~val], k, power), y[val]) for k in ks}


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
    best predicted model when none does. The cost-weight rule is the better of
    the two on held-out data (docs/bench/routing.md): prefer it.
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
