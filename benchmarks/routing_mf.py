"""Ablation for issue 15: bilinear matrix factorisation (RouteLLM-style) vs the current recipe.

    PYTHONPATH=src .venv/bin/python benchmarks/routing_mf.py

Fit on the RouterBench train files, report on the test files (../shared/data/routing); prints one
row per estimator: AIQ, share of the best model's cost to match it, accuracy at 25% / 20% of its
cost (as a share of its accuracy), mean test ROC-AUC. No setting is chosen on the test files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.routing import estimators as E  # noqa: E402
from thrifty.routing.evaluation.cli import default_data  # noqa: E402
from thrifty.routing.evaluation.data import Table  # noqa: E402
from thrifty.routing.evaluation.metrics import accuracy_at, aiq, cost_to_reach, hull  # noqa: E402
from thrifty.routing.evaluation.owndata import LAMBDAS, load_files, outcome, pick  # noqa: E402
from thrifty.routing.evaluation.vectors_cache import prompt_vectors  # noqa: E402
from thrifty.routing.learned import fit  # noqa: E402

TASKS = ("arc_challenge", "mbpp", "winograde")


def matrix_factorisation(
    x: np.ndarray, y: np.ndarray, dim: int, l2: float = 1e-2, steps: int = 600, lr: float = 0.05
) -> Callable[[np.ndarray], np.ndarray]:
    """p(model m correct | prompt x) = sigmoid(v_m . (W x) + b_m), full-batch Adam on log loss."""
    rng = np.random.default_rng(0)
    mean = y.mean(0).clip(0.01, 0.99)
    params = [
        rng.normal(0, 0.1, (x.shape[1], dim)),
        rng.normal(0, 0.1, (y.shape[1], dim)),
        np.log(mean / (1 - mean)),
    ]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        w, v, b = params
        h = x @ w
        g = (1 / (1 + np.exp(-(h @ v.T + b))) - y) / len(x)
        grads = [x.T @ (g @ v) + l2 * w, g.T @ h + l2 * v, g.sum(0)]
        for i, grad in enumerate(grads):
            first[i] = 0.9 * first[i] + 0.1 * grad
            second[i] = 0.999 * second[i] + 0.001 * grad * grad
            params[i] -= lr * (first[i] / (1 - 0.9**t)) / (np.sqrt(second[i] / (1 - 0.999**t)) + 1e-8)
    w, v, b = params
    return lambda q: 1 / (1 + np.exp(-((q @ w) @ v.T + b)))


def report(name: str, predicted: np.ndarray, train: Table, test: Table) -> None:
    price = train.cost.mean(0)
    best_j = int(test.quality.mean(0).argmax())
    best, best_cost = float(test.quality[:, best_j].mean()), float(test.cost[:, best_j].mean())
    costs = [float(test.cost[:, j].mean()) for j in range(len(test.models))]
    points = [outcome(test, pick(predicted, price, lam)) for lam in LAMBDAS]
    reach, curve = cost_to_reach(points, best), hull(points)
    print(
        f"{name:44s} AIQ {aiq(points, min(costs), max(costs)):.4f}  "
        f"match {'-' if reach is None else f'{reach / best_cost:.3f}'}  "
        f"acc@25% {accuracy_at(curve, 0.25 * best_cost) / best:.3f}  acc@20% {accuracy_at(curve, 0.2 * best_cost) / best:.3f}  "
        f"AUC {E.mean_auc(predicted, test.quality):.3f}",
        flush=True,
    )


def main() -> None:
    root = default_data() / "routerbench"
    train = load_files([root / f"{t}_train.csv" for t in TASKS])
    test = load_files([root / f"{t}_test.csv" for t in TASKS])
    cache = ROOT / "benchmarks" / "out"
    xtr = prompt_vectors(train.prompts, "minilm", cache).astype(np.float64)
    xte = prompt_vectors(test.prompts, "minilm", cache).astype(np.float64)
    current = fit(xtr, train.quality, train.models, costs=train.cost, featurizer_name="minilm")
    base = current.predict(xte).astype(np.float64)
    report("current recipe", base, train, test)
    for dim in (16, 64):
        mf = matrix_factorisation(xtr, train.quality, dim)(xte)
        report(f"MF dim={dim}", mf, train, test)
        report(f"50/50 blend of MF dim={dim} and current", (mf + base) / 2, train, test)


if __name__ == "__main__":
    main()
