"""Which parts of the learned router's quality estimate help, on the RouterBench slice.

Each variant is fitted twice: on 80% of the train split and scored on the
other 20% (validation ROC-AUC, used to choose the recipe), then on all of the
train split and scored on the test split (ROC-AUC and the routing outcome of
the ``quality - λ·cost`` sweep). AUC is the mean over the 11 models, and also
the mean within each task, which shows how much a variant knows beyond the
prompt's task.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .. import estimators as E
from ..learned import RECIPES, Recipe, fit, tune_k
from .data import Table
from .metrics import Point

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float64]

_MINILM = RECIPES["minilm"]
VARIANTS: dict[str, tuple[str, Recipe]] = {
    "hash: kNN + ridge (before)": ("hash", RECIPES["hash"]),
    "MiniLM: kNN + ridge (old recipe)": ("minilm", replace(RECIPES["hash"], k=40)),
    "MiniLM: kNN only": ("minilm", replace(_MINILM, shares=(1.0, 0.0, 0.0))),
    "MiniLM: logistic only": ("minilm", replace(_MINILM, shares=(0.0, 1.0, 0.0))),
    "MiniLM: cluster prior only (k-means 8)": ("minilm", replace(_MINILM, shares=(0.0, 0.0, 1.0))),
    "MiniLM: kNN + logistic": ("minilm", replace(_MINILM, shares=(0.5, 0.5, 0.0))),
    "MiniLM: kNN + logistic + cluster prior": ("minilm", _MINILM),
    "MiniLM+hash: kNN + ridge + cluster prior": ("minilm+hash", RECIPES["minilm+hash"]),
    "MiniLM+hash: kNN + ridge": ("minilm+hash", replace(RECIPES["minilm+hash"], shares=(0.5, 0.5, 0.0))),
}


def run(
    vectors: dict[str, tuple[Any, Any]],
    train: Table,
    test: Table,
    curve: Callable[[Matrix], list[Point]],
    score: Callable[[list[Point]], dict[str, Any]],
) -> dict[str, Any]:
    """Rows of validation/test AUC and routing outcome per variant, plus the kNN k sweep."""
    import numpy as np

    rows = np.random.default_rng(0).permutation(len(train.prompts))
    val = np.zeros(len(rows), dtype=bool)
    val[rows[: len(rows) // 5]] = True
    tasks_val = np.array(train.groups)[val]
    tasks_test = np.array(test.groups)
    out: dict[str, Any] = {}
    for name, (feat, recipe) in VARIANTS.items():
        if feat not in vectors:
            continue
        xtr, xte = vectors[feat]
        part = fit(xtr[~val], train.quality[~val], train.models, featurizer_name=feat, recipe=recipe)
        pv = part.predict(xtr[val]).astype(np.float64)
        full = fit(xtr, train.quality, train.models, featurizer_name=feat, recipe=recipe)
        pt = full.predict(xte).astype(np.float64)
        out[name] = {
            "val_auc": round(E.mean_auc(pv, train.quality[val]), 4),
            "val_auc_within_task": round(_within(pv, train.quality[val], tasks_val), 4),
            "test_auc": round(E.mean_auc(pt, test.quality), 4),
            "test_auc_within_task": round(_within(pt, test.quality, tasks_test), 4),
            **score(curve(pt)),
        }
    knn_k = (
        {k: round(v, 4) for k, v in tune_k(vectors["minilm"][0], train.quality).items()}
        if "minilm" in vectors
        else {}
    )
    return {"rows": out, "knn_k_log_loss": knn_k}


def _within(predicted: Matrix, quality: Matrix, tasks: Any) -> float:
    values = [E.mean_auc(predicted[tasks == t], quality[tasks == t]) for t in sorted(set(tasks))]
    return sum(values) / len(values)
