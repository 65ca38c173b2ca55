"""Estimator ablations for issue 15: learned-metric kNN, calibrated stacking, prompt-shape features.

    PYTHONPATH=src .venv/bin/python benchmarks/routing_ablate.py [--quick] [--save preds.npz]
    PYTHONPATH=src .venv/bin/python benchmarks/routing_ablate.py --bootstrap preds.npz   # CV AIQ gains, intervals
    PYTHONPATH=src .venv/bin/python benchmarks/routing_ablate.py --headroom   # AUC the AIQ target would need
    PYTHONPATH=src .venv/bin/python benchmarks/routing_ablate.py --pair gsm8k   # shape features on a RouteLLM pair

Fit on the RouterBench train files, report on the test files (../shared/data/routing). Every
estimator is scored twice: by 5-fold cross-validation on the train files (out-of-fold predictions,
routed with the train prices; this is what settings and the kept recipe are chosen on) and on the
test files (fitted on all of the train files). Per row: AIQ, share of the best model's cost to match
its accuracy, accuracy at 25% / 20% of its cost (as a share of its accuracy), mean ROC-AUC over the
11 models, mean AUC within each task, log loss. The task label is used only to report AUC within a
task, never as an input. No setting is chosen on the test files.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.routing import estimators as E  # noqa: E402
from thrifty.routing import shape  # noqa: E402
from thrifty.routing.evaluation.cli import default_data  # noqa: E402
from thrifty.routing.evaluation.data import Table  # noqa: E402
from thrifty.routing.evaluation.metrics import accuracy_at, aiq, cost_to_reach, hull  # noqa: E402
from thrifty.routing.evaluation.owndata import LAMBDAS, load_file, outcome, pick  # noqa: E402
from thrifty.routing.evaluation.vectors_cache import prompt_vectors  # noqa: E402
from thrifty.routing.vectors import HashingFeaturizer, question_part  # noqa: E402

TASKS = ("arc_challenge", "mbpp", "winograde")
FOLDS = 5
Inputs = dict[str, np.ndarray]
Estimator = Callable[[Inputs, np.ndarray, Inputs], np.ndarray]


def load(split: str) -> Table:
    root = default_data() / "routerbench"
    parts = [load_file(root / f"{t}_{split}.csv") for t in TASKS]
    return Table(
        [p for t in parts for p in t.prompts],
        parts[0].models,
        np.vstack([t.quality for t in parts]),
        np.vstack([t.cost for t in parts]),
        groups=[task for task, t in zip(TASKS, parts, strict=True) for _ in t.prompts],
        skipped=sum(t.skipped for t in parts),
    )


def inputs(table: Table, cache: Path) -> Inputs:
    return {
        "minilm": prompt_vectors(table.prompts, "minilm", cache).astype(np.float64),
        "shape": shape.matrix(table.prompts).astype(np.float64),
        "hash": HashingFeaturizer(1024)
        .transform([question_part(p) for p in table.prompts])
        .astype(np.float64),
    }


def take(x: Inputs, rows: np.ndarray) -> Inputs:
    return {k: v[rows] for k, v in x.items()}


# ---- base estimators: (train inputs, train outcomes, query inputs) -> (n_query, m) ----


def knn(k: int = 160) -> Estimator:
    return lambda tr, y, q: E.knn(q["minilm"], tr["minilm"], y, k, 1.0)


def logistic(l2: float = 10.0) -> Estimator:
    return lambda tr, y, q: E.linear_predict(q["minilm"], E.logistic(tr["minilm"], y, l2), "logistic")


def cluster(c: int = 8) -> Estimator:
    def run(tr: Inputs, y: np.ndarray, q: Inputs) -> np.ndarray:
        centres = E.kmeans(tr["minilm"], c)
        return E.cluster_means(E.assign(tr["minilm"], centres), y, c)[E.assign(q["minilm"], centres)]

    return run


def current() -> Estimator:
    parts = (knn(), logistic(), cluster())
    return lambda tr, y, q: sum(p(tr, y, q) for p in parts) / 3


def metric_knn(l2: float, k: int, beta: float | None = None) -> Estimator:
    """kNN where distance also counts the ridge-predicted correctness vector ``x @ W``.

    The space is ``[x, beta * x @ W]`` (Euclidean): neighbours must be near in the embedding
    and share a predicted correctness pattern; ``beta=None`` keeps only the projection.
    """

    def run(tr: Inputs, y: np.ndarray, q: Inputs) -> np.ndarray:
        w = E.ridge(tr["minilm"], y, l2)[:-1]
        zt, zq = tr["minilm"] @ w, q["minilm"] @ w
        if beta is not None:
            zt, zq = np.hstack([tr["minilm"], beta * zt]), np.hstack([q["minilm"], beta * zq])
        return E.knn_euclidean(zq, zt, y, k)

    return run


def shape_logistic(scale: float, l2: float = 10.0) -> Estimator:
    """Per-model logistic on MiniLM plus the standardised shape features (times ``scale``)."""

    def run(tr: Inputs, y: np.ndarray, q: Inputs) -> np.ndarray:
        mu, sd = tr["shape"].mean(0), tr["shape"].std(0) + 1e-6
        xt = np.hstack([tr["minilm"], scale * (tr["shape"] - mu) / sd])
        xq = np.hstack([q["minilm"], scale * (q["shape"] - mu) / sd])
        return E.linear_predict(xq, E.logistic(xt, y, l2), "logistic")

    return run


def hash_ridge(l2: float) -> Estimator:
    """Ridge on hashed word n-grams of the question (dual form: n < d)."""

    def run(tr: Inputs, y: np.ndarray, q: Inputs) -> np.ndarray:
        x, mean = tr["hash"], y.mean(0)
        alpha = np.linalg.solve(x @ x.T + l2 * np.eye(len(x)), y - mean)
        return np.clip(q["hash"] @ (x.T @ alpha) + mean, 0.0, 1.0)

    return run


# ---- cross-fitting and stacking ----


def oof(est: Estimator, x: Inputs, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    out = np.zeros_like(y)
    for f in range(FOLDS):
        out[fold == f] = est(take(x, fold != f), y[fold != f], take(x, fold == f))
    return out


def stack_cv(parts_oof: list[np.ndarray], y: np.ndarray, fold: np.ndarray, l2: float) -> np.ndarray:
    """Out-of-fold stacked predictions: the stacker fitted on the other folds' out-of-fold parts."""
    out = np.zeros_like(y)
    for f in range(FOLDS):
        w = E.stack_fit([p[fold != f] for p in parts_oof], y[fold != f], l2)
        out[fold == f] = E.stack_predict([p[fold == f] for p in parts_oof], w)
    return out


# ---- scoring ----


def score(pred: np.ndarray, table: Table, price: np.ndarray) -> dict[str, float | None]:
    best_j = int(table.quality.mean(0).argmax())
    best, best_cost = float(table.quality[:, best_j].mean()), float(table.cost[:, best_j].mean())
    costs = [float(table.cost[:, j].mean()) for j in range(len(table.models))]
    points = [outcome(table, pick(pred, price, lam)) for lam in LAMBDAS]
    reach, curve = cost_to_reach(points, best), hull(points)
    groups = np.array(table.groups)
    within = [E.mean_auc(pred[groups == g], table.quality[groups == g]) for g in TASKS]
    return {
        "aiq": aiq(points, min(costs), max(costs)),
        "match": None if reach is None else reach / best_cost,
        "acc25": accuracy_at(curve, 0.25 * best_cost) / best,
        "acc20": accuracy_at(curve, 0.20 * best_cost) / best,
        "auc": E.mean_auc(pred, table.quality),
        "auc_task": float(np.mean(within)),
        "logloss": E.log_loss(pred, table.quality),
    }


def line(name: str, cv: dict[str, float | None], test: dict[str, float | None]) -> str:
    def cells(s: dict[str, float | None]) -> str:
        match = "–" if s["match"] is None else f"{100 * s['match']:.1f}%"
        return (
            f"{s['aiq']:.3f} | {match} | {100 * (s['acc25'] or 0):.1f}% | {100 * (s['acc20'] or 0):.1f}% | "
            f"{s['auc']:.3f} | {s['auc_task']:.3f} | {s['logloss']:.4f}"
        )

    return f"| {name} | {cells(cv)} | {cells(test)} |"


def references(table: Table, price: np.ndarray) -> str:
    """AIQ of the hull of single models, of routing on the true per-task means, and of the oracle."""
    costs = [float(table.cost[:, j].mean()) for j in range(len(table.models))]
    singles = [(c, float(table.quality[:, j].mean())) for j, c in enumerate(costs)]
    groups = np.array(table.groups)
    task_mean = np.zeros_like(table.quality)
    for g in TASKS:
        task_mean[groups == g] = table.quality[groups == g].mean(0)
    task_points = [outcome(table, pick(task_mean, price, lam)) for lam in LAMBDAS]
    oracle = outcome(table, np.argmin(np.where(table.quality >= 1.0, 0.0, 1e3) + table.cost, axis=1))
    low, high = min(costs), max(costs)
    return (
        f"hull AIQ {aiq(singles, low, high):.3f}; knowing the task (its true mean per model) "
        f"{aiq(task_points, low, high):.3f}; oracle {oracle[1]:.3f}"
    )


def headroom(test: Table, price: np.ndarray) -> None:
    """What within-task AUC would the AIQ target need? Simulated estimates on the test files.

    Each estimate is the true per-task mean plus ``a`` times the prompt's own outcome plus noise,
    in logit space; ``a`` sets how much a per-prompt signal the estimator would have. This reads the
    test labels to describe the headroom only; nothing is chosen from it.
    """
    groups = np.array(test.groups)
    task_mean = np.zeros_like(test.quality)
    for g in TASKS:
        task_mean[groups == g] = test.quality[groups == g].mean(0)
    noise = np.random.default_rng(0).standard_normal(test.quality.shape)
    print("| per-prompt signal a | test AUC in task | test AUC | AIQ | acc. at 20% of GPT-4's cost |")
    print("|---:|---:|---:|---:|---:|")
    for a in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0):
        p = 1 / (1 + np.exp(-(E.logit(task_mean) + a * (2 * test.quality - 1) + 0.5 * noise)))
        s = score(p, test, price)
        print(
            f"| {a:g} | {s['auc_task']:.3f} | {s['auc']:.3f} | {s['aiq']:.3f} | {100 * (s['acc20'] or 0):.1f}% |"
        )


def bootstrap(saved: Path, train: Table, price: np.ndarray, rounds: int = 150) -> None:
    """Paired bootstrap over train prompts of the CV AIQ gain of each saved estimator over the current recipe."""
    data = np.load(saved)
    current = "oof:current recipe: mean of kNN, logistic, cluster prior"
    lams = LAMBDAS[::4]
    costs = train.cost.mean(0)
    picks = {k: [pick(data[k], price, lam) for lam in lams] for k in data.files if k.startswith("oof:")}

    def area(name: str, rows: np.ndarray) -> float:
        points = [
            (float(train.cost[rows, c[rows]].mean()), float(train.quality[rows, c[rows]].mean()))
            for c in picks[name]
        ]
        return aiq(points, float(costs.min()), float(costs.max()), steps=400)

    rng = np.random.default_rng(1)
    gains: dict[str, list[float]] = {k: [] for k in picks if k != current}
    for _ in range(rounds):
        rows = rng.integers(0, len(train.quality), len(train.quality))
        base = area(current, rows)
        for k in gains:
            gains[k].append(area(k, rows) - base)
    for k, v in sorted(gains.items(), key=lambda kv: -float(np.mean(kv[1]))):
        g = np.array(v)
        print(
            f"{k[4:]}: CV AIQ gain {g.mean():+.4f}, 90% interval [{np.quantile(g, 0.05):+.4f}, {np.quantile(g, 0.95):+.4f}]"
        )


def pair(name: str) -> None:
    """A check on a RouteLLM pair (``gsm8k``, ``mmlu``): 5 random folds, current recipe vs shape features.

    GSM8K is where MiniLM alone lost to hashed words (docs/bench/routing.md), so surface features
    (digits, maths markers, length) had the best chance there. Exploratory: nothing is chosen on it.
    """
    from thrifty.routing.evaluation.data import load_pair
    from thrifty.routing.evaluation.metrics import apgr, cpt, pgr_curve

    table = load_pair(default_data(), name)
    cache = ROOT / "benchmarks" / "out"
    x = {
        "minilm": prompt_vectors(table.prompts, "minilm", cache).astype(np.float64),
        "shape": shape.matrix(table.prompts).astype(np.float64),
    }
    weak, strong = table.quality[:, 0], table.quality[:, 1]
    fold = np.random.default_rng(0).permutation(len(weak)) % FOLDS
    variants = {
        "current recipe (kNN, logistic, cluster prior)": [knn(), logistic(), cluster()],
        "current recipe with shape features in the logistic (scale 0.3)": [
            knn(),
            shape_logistic(0.3),
            cluster(),
        ],
        "logistic on MiniLM alone": [logistic()],
        "logistic on MiniLM + shape features (scale 0.3)": [shape_logistic(0.3)],
    }
    print(f"{name}: {len(weak)} prompts ({table.excluded} contaminated excluded), 5 random folds")
    print("| policy | APGR | CPT(50%) | CPT(80%) |\n|---|---:|---:|---:|")
    for name, parts in variants.items():
        p = sum(oof(part, x, table.quality, fold) for part in parts) / len(parts)
        curve = pgr_curve(p[:, 1] - p[:, 0], weak, strong)
        print(
            f"| {name} | {apgr(curve):.3f} | {100 * cpt(curve, 0.5):.1f}% | {100 * cpt(curve, 0.8):.1f}% |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer settings in the cross-validated grids")
    parser.add_argument(
        "--save", type=Path, default=None, help="write every estimator's predictions here (.npz)"
    )
    parser.add_argument(
        "--headroom", action="store_true", help="only the within-task AUC the target would need"
    )
    parser.add_argument(
        "--bootstrap", type=Path, default=None, help="only the paired bootstrap of a --save file"
    )
    parser.add_argument(
        "--pair", choices=("gsm8k", "mmlu"), default=None, help="only this RouteLLM pair's check"
    )
    args = parser.parse_args()
    if args.pair:
        pair(args.pair)
        return
    started = time.time()
    train, test = load("train"), load("test")
    cache = ROOT / "benchmarks" / "out"
    xtr, xte = inputs(train, cache), inputs(test, cache)
    y = train.quality
    price = train.cost.mean(0)
    fold = np.random.default_rng(0).permutation(len(y)) % FOLDS
    print(
        f"train {len(y)} prompts ({train.skipped} skipped), test {len(test.prompts)} ({test.skipped} skipped)"
    )
    print("train:", references(train, price))
    print("test: ", references(test, price), flush=True)
    if args.headroom or args.bootstrap:
        if args.headroom:
            headroom(test, price)
        if args.bootstrap:
            bootstrap(args.bootstrap, train, price)
        return

    # settings chosen by cross-validated log loss on the train files only
    grids: dict[str, dict[str, Estimator]] = {
        "metric": {
            f"learned-metric kNN (ridge l2={l2:g}, {'projection only' if b is None else f'beta={b:g}'}, k={k})": (
                metric_knn(l2, k, b)
            )
            for l2 in (1.0, 10.0)
            for b in ((None, 10.0) if args.quick else (None, 3.0, 10.0, 30.0))
            for k in ((40, 160) if args.quick else (40, 80, 160))
        },
        "shape": {
            f"logistic on MiniLM + shape features (scale {s:g})": shape_logistic(s) for s in (0.1, 0.3, 1.0)
        },
        "hash": {f"ridge on hashed n-grams (l2={l2:g})": hash_ridge(l2) for l2 in (1.0, 3.0, 10.0)},
    }
    oofs: dict[str, np.ndarray] = {}
    tests: dict[str, np.ndarray] = {}
    chosen: dict[str, str] = {}
    rows: list[str] = []

    def add(name: str, est: Estimator) -> None:
        oofs[name] = oof(est, xtr, y, fold)
        tests[name] = est(xtr, y, xte)
        rows.append(line(name, score(oofs[name], train, price), score(tests[name], test, price)))
        print(rows[-1], f"[{time.time() - started:.0f} s]", flush=True)

    for name, est in {
        "kNN (k=160)": knn(),
        "logistic (l2=10)": logistic(),
        "cluster prior (k-means 8)": cluster(),
    }.items():
        add(name, est)
    base = ["kNN (k=160)", "logistic (l2=10)", "cluster prior (k-means 8)"]
    current_name = "current recipe: mean of kNN, logistic, cluster prior"
    oofs[current_name] = sum(oofs[b] for b in base) / 3
    tests[current_name] = sum(tests[b] for b in base) / 3
    rows.append(
        line(current_name, score(oofs[current_name], train, price), score(tests[current_name], test, price))
    )
    print(rows[-1], flush=True)
    for family, grid in grids.items():
        for name, est in grid.items():
            add(name, est)
        chosen[family] = min(grid, key=lambda n: E.log_loss(oofs[n], y))
        print(f"chosen by CV log loss ({family}): {chosen[family]}", flush=True)

    stacks = {
        "stack (Platt per model) of kNN, logistic, cluster": base,
        "stack of kNN, logistic, cluster + learned-metric kNN": base + [chosen["metric"]],
        "stack of all (+ learned-metric kNN, shape logistic, hash ridge)": base + list(chosen.values()),
    }
    for name, parts in stacks.items():
        for l2 in (0.1, 1.0):
            label = f"{name} (l2={l2:g})"
            cv = stack_cv([oofs[p] for p in parts], y, fold, l2)
            w = E.stack_fit([oofs[p] for p in parts], y, l2)
            pt = E.stack_predict([tests[p] for p in parts], w)
            oofs[label], tests[label] = cv, pt
            rows.append(line(label, score(cv, train, price), score(pt, test, price)))
            print(rows[-1], flush=True)
    swaps = {
        f"current recipe with {chosen['shape']} in place of the logistic": [
            "kNN (k=160)",
            chosen["shape"],
            "cluster prior (k-means 8)",
        ],
        f"mean of the current recipe's three parts and {chosen['metric']}": base + [chosen["metric"]],
        f"mean of the current recipe's three parts and {chosen['hash']}": base + [chosen["hash"]],
    }
    for label, parts in swaps.items():
        oofs[label] = sum(oofs[p] for p in parts) / len(parts)
        tests[label] = sum(tests[p] for p in parts) / len(parts)
        rows.append(line(label, score(oofs[label], train, price), score(tests[label], test, price)))
        print(rows[-1], flush=True)
    if args.save:
        np.savez(
            args.save,
            **{f"oof:{k}": v for k, v in oofs.items()},
            **{f"test:{k}": v for k, v in tests.items()},
        )

    print()
    print(
        "| estimator | CV AIQ | CV match | CV acc@25% | CV acc@20% | CV AUC | CV AUC in task | CV log loss "
        "| test AIQ | test match | test acc@25% | test acc@20% | test AUC | test AUC in task | test log loss |"
    )
    print("|---|" + "---:|" * 14)
    print("\n".join(rows))
    print(f"\n{time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
