"""Small numpy estimators behind the learned router: kNN, ridge, logistic, k-means.

Every function takes unit-norm prompt vectors ``x`` (n, d) and per-model
outcomes ``y`` (n, m) in [0, 1], and returns plain arrays so a fitted router
can be saved as an ``.npz`` file. numpy is imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Array = NDArray[np.float64]


def knn(query: Any, x: Any, y: Any, k: int, power: float = 1.0, shrink: float = 0.5) -> Array:
    """Similarity-weighted mean outcome of the ``k`` nearest rows (cosine), shrunk to the mean.

    Similarities are computed in ``x``'s own precision when it is float32 (a fitted router's
    stored vectors), and for a few query rows (one request) by numpy's own loop rather than a
    threaded BLAS call, which stalled for milliseconds on a busy machine (docs/bench/routing.md).
    """
    import numpy as np

    xx = np.asarray(x)
    xx = xx if xx.dtype == np.float32 else xx.astype(np.float64, copy=False)
    qq = np.asarray(query, dtype=xx.dtype)
    one_request = xx.dtype == np.float32 and len(qq) <= 4
    sims = (np.einsum("qd,nd->qn", qq, xx) if one_request else qq @ xx.T).astype(np.float64)
    k = max(1, min(k, sims.shape[1]))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.maximum(np.take_along_axis(sims, idx, axis=1), 0.0) ** power
    yy = np.asarray(y, np.float64)
    num = np.einsum("nk,nkm->nm", w, yy[idx]) + shrink * yy.mean(axis=0)
    out: Array = num / (w.sum(axis=1, keepdims=True) + shrink)
    return out


def ridge(x: Any, y: Any, l2: float = 1.0) -> Array:
    """(d + 1, m) ridge weights on centred targets; the last row is the bias (mean outcome)."""
    import numpy as np

    xx, yy = np.asarray(x, np.float64), np.asarray(y, np.float64)
    mean = yy.mean(axis=0)
    w = np.linalg.solve(xx.T @ xx + l2 * np.eye(xx.shape[1]), xx.T @ (yy - mean))
    out: Array = np.vstack([w, mean[None, :]])
    return out


def logistic(x: Any, y: Any, l2: float = 10.0, iters: int = 30) -> Array:
    """(d + 1, m) L2-penalised logistic regression per column (Newton steps); last row is the bias."""
    import numpy as np

    xx = np.asarray(x, np.float64)
    xb = np.hstack([xx, np.ones((len(xx), 1))])
    penalty = l2 * np.eye(xb.shape[1])
    penalty[-1, -1] = 1e-6  # the bias is not shrunk
    yy = np.asarray(y, np.float64)
    out: Array = np.zeros((xb.shape[1], yy.shape[1]))
    for j in range(yy.shape[1]):
        p0 = float(np.clip(yy[:, j].mean(), 1e-3, 1 - 1e-3))
        w = np.zeros(xb.shape[1])
        w[-1] = np.log(p0 / (1 - p0))
        for _ in range(iters):
            p = 1.0 / (1.0 + np.exp(-(xb @ w)))
            grad = xb.T @ (p - yy[:, j]) + penalty @ w
            hess = (xb * (p * (1 - p))[:, None]).T @ xb + penalty
            step = np.linalg.solve(hess, grad)
            w -= step
            if float(np.abs(step).max()) < 1e-6:
                break
        out[:, j] = w
    return out


def linear_predict(x: Any, weights: Any, kind: str) -> Array:
    """Predicted outcome in [0, 1] from ``ridge`` or ``logistic`` weights."""
    import numpy as np

    z = np.asarray(x, np.float64) @ weights[:-1] + weights[-1]
    out: Array = 1.0 / (1.0 + np.exp(-z)) if kind == "logistic" else np.clip(z, 0.0, 1.0)
    return out


def kmeans(x: Any, k: int, iters: int = 50, seed: int = 0) -> Array:
    """(k, d) centroids by Lloyd's algorithm from a k-means++ start (fixed seed)."""
    import numpy as np

    xx = np.asarray(x, np.float64)
    rng = np.random.default_rng(seed)
    centres = [xx[rng.integers(len(xx))]]
    dist = ((xx - centres[0]) ** 2).sum(axis=1)
    for _ in range(k - 1):
        total = float(dist.sum())
        pick = rng.choice(len(xx), p=dist / total) if total > 0 else rng.integers(len(xx))
        centres.append(xx[pick])
        dist = np.minimum(dist, ((xx - xx[pick]) ** 2).sum(axis=1))
    c = np.array(centres)
    for _ in range(iters):
        a = assign(xx, c)
        new = np.array([xx[a == i].mean(axis=0) if (a == i).any() else c[i] for i in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    return c


def assign(x: Any, centroids: Any) -> Any:
    """Index of the nearest centroid (Euclidean) for each row."""
    import numpy as np

    c = np.asarray(centroids, np.float64)
    return np.argmax(np.asarray(x, np.float64) @ c.T - 0.5 * (c * c).sum(axis=1), axis=1)


def cluster_means(labels: Any, y: Any, k: int, shrink: float = 5.0) -> Array:
    """(k, m) mean outcome per cluster, shrunk toward the overall mean by ``shrink`` pseudo-rows."""
    import numpy as np

    yy = np.asarray(y, np.float64)
    prior = yy.mean(axis=0)
    out: Array = np.zeros((k, yy.shape[1]))
    for c in range(k):
        rows = labels == c
        out[c] = (yy[rows].sum(axis=0) + shrink * prior) / (rows.sum() + shrink)
    return out


def log_loss(predicted: Any, y: Any) -> float:
    import numpy as np

    p = np.clip(np.asarray(predicted, np.float64), 1e-4, 1 - 1e-4)
    yy = np.asarray(y, np.float64)
    return float(-(yy * np.log(p) + (1 - yy) * np.log(1 - p)).mean())


def roc_auc(score: Any, y: Any) -> float | None:
    """ROC-AUC of ``score`` for binary ``y >= 0.5`` (ties share ranks); None with one class only."""
    import numpy as np

    pos = np.asarray(y) >= 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    _, inverse, counts = np.unique(np.asarray(score), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = ((ends - counts + 1 + ends) / 2.0)[inverse]
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def mean_auc(predicted: Any, y: Any) -> float:
    """Mean ROC-AUC over the models (columns) that have both outcomes."""
    values = [roc_auc(predicted[:, j], y[:, j]) for j in range(y.shape[1])]
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else float("nan")


def knn_euclidean(query: Any, x: Any, y: Any, k: int, shrink: float = 0.5) -> Array:
    """Mean outcome of the ``k`` nearest rows by Euclidean distance, shrunk to the mean.

    Meant for a learned space (e.g. ``x @ projection``), where the length of a row carries
    information that cosine similarity would throw away.
    """
    import numpy as np

    q, xx = np.asarray(query, np.float64), np.asarray(x, np.float64)
    dist = (q * q).sum(axis=1)[:, None] - 2.0 * q @ xx.T + (xx * xx).sum(axis=1)[None, :]
    k = max(1, min(k, xx.shape[0]))
    idx = np.argpartition(dist, k - 1, axis=1)[:, :k]
    yy = np.asarray(y, np.float64)
    out: Array = (yy[idx].sum(axis=1) + shrink * yy.mean(axis=0)) / (k + shrink)
    return out


def logit(p: Any) -> Array:
    import numpy as np

    pp = np.clip(np.asarray(p, np.float64), 1e-3, 1 - 1e-3)
    out: Array = np.log(pp / (1 - pp))
    return out


def stack_fit(parts: Any, y: Any, l2: float = 1.0) -> Array:
    """(e + 1, m) Platt-style stacker: per model, a logistic regression on the logits of ``e`` estimates.

    ``parts`` holds e arrays (n, m) of out-of-fold predictions; the last row of the result is the bias.
    """
    import numpy as np

    yy = np.asarray(y, np.float64)
    out: Array = np.zeros((len(parts) + 1, yy.shape[1]))
    for j in range(yy.shape[1]):
        features = np.stack([logit(p[:, j]) for p in parts], axis=1)
        out[:, j] = logistic(features, yy[:, [j]], l2)[:, 0]
    return out


def stack_predict(parts: Any, weights: Any) -> Array:
    """Stacked probability (n, m) from ``e`` estimates (n, m) and :func:`stack_fit` weights."""
    import numpy as np

    z = sum(logit(p) * np.asarray(weights)[i] for i, p in enumerate(parts)) + np.asarray(weights)[-1]
    out: Array = 1.0 / (1.0 + np.exp(-z))
    return out
