"""RouterBench slice: every policy's accuracy-vs-cost points on the test split.

Policies: each single model, a random mix, the rules router (cheap model vs
the most accurate, cut by complexity), the learned router (swept over its
cost weight, and with the weight calibrated on the train split only), a
two-step cascade with a learned answer verifier, and the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import features as F
from ..learned import LearnedModel, fit
from . import ablation
from .data import Table, load_routerbench
from .metrics import Point, aiq, cost_to_reach, hull
from .vectors_cache import prompt_vectors

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float64]

TARGETS = [round(0.3 + 0.0125 * i, 4) for i in range(57)]  # quality targets swept, 0.3 .. 1.0
LAMBDAS = [0.0] + [10 ** (x / 32) for x in range(-128, 33)]  # cost weights swept for the curve


@dataclass
class BenchResult:
    models: list[str]
    singles: dict[str, Point]
    policies: dict[str, list[Point]]
    oracle: Point
    notes: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        costs = [c for c, _ in self.singles.values()]
        low, high = min(costs), max(costs)
        best_model = max(self.singles, key=lambda m: self.singles[m][1])
        best_cost, best_acc = self.singles[best_model]
        every = {**{m: [p] for m, p in self.singles.items()}, **self.policies, "oracle": [self.oracle]}
        rows = {name: score_points(points, low, high, best_cost, best_acc) for name, points in every.items()}
        return {"best_model": best_model, "best_accuracy": best_acc, "best_cost": best_cost, "rows": rows}


def score_points(
    points: list[Point], low: float, high: float, best_cost: float, best_acc: float
) -> dict[str, Any]:
    """AIQ, best accuracy and the cost (absolute and as a share of the best model's) to reach its accuracy."""
    reach = cost_to_reach(points, best_acc)
    share = {f: cost_to_reach(points, f * best_acc) for f in (0.98, 0.95)}
    return {
        "aiq": round(aiq(points, low, high), 4),
        "max_accuracy": round(max(p[1] for p in points), 4),
        "cost_to_match_best": reach,
        "share_of_best_cost": None if reach is None else round(reach / best_cost, 4),
        "share_for_98pct": None if share[0.98] is None else round(share[0.98] / best_cost, 4),
        "share_for_95pct": None if share[0.95] is None else round(share[0.95] / best_cost, 4),
    }


def run(root: Path, featurizer: str, cache: Path | None) -> BenchResult:
    import numpy as np

    train, test = load_routerbench(root, "train"), load_routerbench(root, "test")
    xtr = prompt_vectors(train.prompts, featurizer, cache)
    xte = prompt_vectors(test.prompts, featurizer, cache)
    singles = {
        m: (float(test.cost[:, j].mean()), float(test.quality[:, j].mean()))
        for j, m in enumerate(test.models)
    }
    model = fit(xtr, train.quality, train.models, costs=train.cost, featurizer_name=featurizer)
    predicted = model.predict(xte).astype(np.float64)
    price = train.cost.mean(axis=0)

    def sweep(p: Matrix) -> list[Point]:
        return [_outcome(test, _pick(p, price, lam)) for lam in LAMBDAS]

    vectors = {featurizer: (xtr, xte)}
    policies: dict[str, list[Point]] = {
        "random mix": _random_mix(test),
        "rules": _rules(train, test),
    }
    if featurizer != "hash":  # the previous router, side by side
        htr, hte = prompt_vectors(train.prompts, "hash", cache), prompt_vectors(test.prompts, "hash", cache)
        vectors["hash"] = (htr, hte)
        vectors |= {
            f: (prompt_vectors(train.prompts, f, cache), prompt_vectors(test.prompts, f, cache))
            for f in ("minilm", "minilm+hash")
            if f not in vectors
        }
        before = fit(htr, train.quality, train.models, featurizer_name="hash")
        policies["learned (hash, before; λ sweep)"] = sweep(before.predict(hte).astype(np.float64))
    policies |= {
        f"learned ({featurizer}; λ sweep)": sweep(predicted),
        f"learned ({featurizer}; target sweep)": [
            _outcome(test, _target(predicted, price, t, int(train.quality.mean(0).argmax()))) for t in TARGETS
        ],
        "cascade": _cascade(train, test, model, featurizer, cache),
        "rules + feedback (online)": _feedback(train, test),
    }
    lams = _calibrate(xtr, train, featurizer, (1.0, 0.95))
    for aim, lam in zip(("100%", "95%"), lams, strict=True):
        policies[f"learned ({featurizer}), λ set on train for {aim} of best"] = [
            _outcome(test, _pick(predicted, price, lam))
        ]
    notes = {
        "skipped_train": train.skipped,
        "skipped_test": test.skipped,
        "n_train": len(train.prompts),
        "n_test": len(test.prompts),
        "calibrated_lambda": lams,
        "featurizer": featurizer,
    }
    result = BenchResult(test.models, singles, policies, _oracle(test), notes)
    summary = result.summary()
    low, high = min(c for c, _ in singles.values()), max(c for c, _ in singles.values())

    def score(points: list[Point]) -> dict[str, Any]:
        return score_points(points, low, high, summary["best_cost"], summary["best_accuracy"])

    notes["ablation"] = ablation.run(vectors, train, test, sweep, score)
    return result


def _pick(predicted: Matrix, price: Matrix, lam: float) -> Matrix:
    import numpy as np

    utility = predicted - lam * price / price.max()
    out: Matrix = np.argmax(utility - 1e-9 * price / price.max(), axis=1)
    return out


def _target(predicted: Matrix, price: Matrix, target: float, best: int) -> Matrix:
    """The cheapest model predicted to clear ``target``; the best model when none does."""
    import numpy as np

    clears = predicted >= target
    masked = np.where(clears, price[None, :], np.inf)
    cheapest = np.argmin(masked, axis=1)
    out: Matrix = np.where(clears.any(axis=1), cheapest, best)
    return out


def _outcome(table: Table, choice: Matrix) -> Point:
    import numpy as np

    rows = np.arange(len(choice))
    return (float(table.cost[rows, choice].mean()), float(table.quality[rows, choice].mean()))


def _oracle(table: Table) -> Point:
    import numpy as np

    # the cheapest correct model, or the cheapest model when none is correct
    penalty = np.where(table.quality >= 1.0, 0.0, 1e3) + table.cost
    return _outcome(table, np.argmin(penalty, axis=1))


def _random_mix(table: Table) -> list[Point]:
    """Each prompt to a model drawn at random: mixes of the single models (their hull)."""
    singles = [
        (float(table.cost[:, j].mean()), float(table.quality[:, j].mean())) for j in range(len(table.models))
    ]
    uniform = (float(table.cost.mean()), float(table.quality.mean()))
    return [*hull(singles), uniform]


def _ladder(train: Table) -> tuple[int, int]:
    """The rules router's two tiers: the best model costing < 20% of the best, and the best."""
    acc = train.quality.mean(axis=0)
    cost = train.cost.mean(axis=0)
    strong = int(acc.argmax())
    cheap = [j for j in range(len(acc)) if cost[j] < 0.2 * cost[strong]]
    weak = max(cheap, key=lambda j: acc[j]) if cheap else strong
    return weak, strong


def _rules(train: Table, test: Table) -> list[Point]:
    import numpy as np

    weak, strong = _ladder(train)
    score = np.array([F.complexity(F.extract(p)) for p in test.prompts])
    points = []
    for q in np.linspace(0, 1, 41):
        cut = np.quantile(score, q) if q < 1 else np.inf
        choice = np.where(score >= cut, strong, weak)
        points.append(_outcome(test, choice))
    return points


def _feedback(train: Table, test: Table) -> list[Point]:
    """Rules start each prompt; the bandit learns online from ratings (5 if correct, else 1)."""
    import numpy as np

    from ..feedback import FeedbackLearner
    from ..settings import FeedbackSettings

    weak, strong = _ladder(train)
    feats = [F.extract(p) for p in test.prompts]
    score = np.array([F.complexity(f) for f in feats])
    cut = float(np.quantile(score, 0.5))
    points = []
    for target in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        learner = FeedbackLearner(FeedbackSettings(enabled=True, target=target, explore=0.05, seed=0))
        tiers = ["weak", "strong"]
        choice = np.zeros(len(feats), dtype=int)
        for i, f in enumerate(feats):
            kind = F.request_kind(f)
            index = learner.start(kind, tiers, 1 if score[i] >= cut else 0)
            model = strong if index else weak
            choice[i] = model
            learner.record(kind, tiers[index], float(test.quality[i, model]))
        points.append(_outcome(test, choice))
    return points


def _calibrate(
    xtr: Any, train: Table, featurizer: str, shares: tuple[float, ...], folds: int = 5
) -> list[float]:
    """Per share of the best model's accuracy, the largest cost weight reaching it in 5-fold CV on train."""
    import numpy as np

    predicted = np.zeros_like(train.quality)
    fold = np.arange(len(train.prompts)) % folds
    for f in range(folds):
        part = fit(
            xtr[fold != f],
            train.quality[fold != f],
            train.models,
            costs=train.cost[fold != f],
            featurizer_name=featurizer,
        )
        predicted[fold == f] = part.predict(xtr[fold == f])
    price = train.cost.mean(axis=0)
    best = float(train.quality.mean(axis=0).max())
    curve = [(lam, _outcome(train, _pick(predicted, price, lam))[1]) for lam in sorted(LAMBDAS, reverse=True)]
    out = []
    for share in shares:  # from the cheapest setting up; else the most accurate one
        reaching = [lam for lam, acc in curve if acc >= share * best]
        out.append(reaching[0] if reaching else max(curve, key=lambda c: c[1])[0])
    return out


def _cascade(
    train: Table, test: Table, model: LearnedModel, featurizer: str, cache: Path | None
) -> list[Point]:
    """Weak model first; a verifier fitted on train (prompt + answer) decides escalation."""
    import numpy as np

    weak, strong = _ladder(train)
    answers_tr = [
        f"{p[-600:]}\n### answer\n{r[weak]}" for p, r in zip(train.prompts, train.responses, strict=True)
    ]
    answers_te = [
        f"{p[-600:]}\n### answer\n{r[weak]}" for p, r in zip(test.prompts, test.responses, strict=True)
    ]
    vtr = prompt_vectors(answers_tr, "hash", cache)
    vte = prompt_vectors(answers_te, "hash", cache)
    verifier = fit(vtr, train.quality[:, [weak]], ["weak"], featurizer_name="hash")
    confidence = verifier.predict(vte)[:, 0].astype(np.float64)
    rows = np.arange(len(test.prompts))
    points = []
    for q in np.linspace(0, 1, 41):
        cut = np.quantile(confidence, q) if q < 1 else np.inf
        escalate = confidence < cut
        cost = test.cost[rows, weak] + np.where(escalate, test.cost[rows, strong], 0.0)
        acc = np.where(escalate, test.quality[rows, strong], test.quality[rows, weak])
        points.append((float(cost.mean()), float(acc.mean())))
    return points
