"""RouteLLM strong/weak pairs (GPT-4 vs Mixtral): APGR and CPT per policy.

These files have no train/test split, so the learned router is scored with
k-fold cross-fitting: each prompt's score comes from a router fitted on the
other folds. Two fold schemes are reported: random folds (in-distribution,
like RouteLLM's golden-label augmentation) and folds by subject/question
(the router never saw the prompt's subject), which is the harder, more
honest setting. Contaminated prompts are excluded when loading.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import features as F
from ..learned import fit
from ..vectors import FEATURIZERS
from .data import Table, load_pair
from .metrics import apgr, cpt, pgr_curve
from .vectors_cache import prompt_vectors

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector = NDArray[np.float64]


@dataclass
class PairResult:
    name: str
    n: int
    excluded: int
    skipped: int
    weak: float
    strong: float
    curves: dict[str, list[tuple[float, float]]]

    def summary(self) -> dict[str, Any]:
        rows = {
            policy: {
                "apgr": round(apgr(c), 4),
                "cpt50": round(cpt(c, 0.5), 4),
                "cpt80": round(cpt(c, 0.8), 4),
            }
            for policy, c in self.curves.items()
        }
        return {
            "n": self.n,
            "excluded": self.excluded,
            "skipped": self.skipped,
            "weak": round(self.weak, 4),
            "strong": round(self.strong, 4),
            "rows": rows,
        }


def run(root: Path, name: str, featurizer: str, cache: Path | None, folds: int = 5) -> PairResult:
    import numpy as np

    table = load_pair(root, name)
    x = prompt_vectors(table.prompts, featurizer, cache)
    weak, strong = table.quality[:, 0], table.quality[:, 1]
    rng = np.random.default_rng(0)
    curves = {
        "random": [(i / 100, i / 100) for i in range(101)],
        "rules": pgr_curve(_rules_score(table), weak, strong),
    }
    grouped = len(set(table.groups)) > 1
    random_folds = _random_folds(len(weak), folds, rng)
    group_folds = _group_folds(table.groups, folds)
    main = "mt_bench" if name == "mt_bench" else "random"
    fold = group_folds if name == "mt_bench" else random_folds  # MT Bench: both turns in one fold
    label = "5-fold by question" if name == "mt_bench" else "random folds"
    others = [] if featurizer == "hash" else [f for f in FEATURIZERS if f != featurizer]
    for other in others:  # the previous router (hash) and the other vectors, side by side
        xo = prompt_vectors(table.prompts, other, cache)
        tag = "hash, before" if other == "hash" else other
        curves[f"learned ({tag}; {label})"] = pgr_curve(_cross_fit(xo, table, fold, other), weak, strong)
    curves[f"learned ({featurizer}; {label})"] = pgr_curve(
        _cross_fit(x, table, fold, featurizer), weak, strong
    )
    if main == "random" and grouped:
        curves[f"learned ({featurizer}; unseen subject)"] = pgr_curve(
            _cross_fit(x, table, group_folds, featurizer), weak, strong
        )
    curves["oracle"] = pgr_curve(strong - weak + 1e-6 * rng.random(len(weak)), weak, strong)
    if any(r[0] for r in table.responses):
        curves["cascade (answer verifier, random folds)"] = pgr_curve(
            _verifier_score(table, _random_folds(len(weak), folds, rng), cache), weak, strong
        )
    return PairResult(
        name, len(weak), table.excluded, table.skipped, float(weak.mean()), float(strong.mean()), curves
    )


def _rules_score(table: Table) -> Vector:
    import numpy as np

    return np.array([F.complexity(F.extract(p)) for p in table.prompts])


def _random_folds(n: int, folds: int, rng: Any) -> Vector:
    out: Vector = rng.permutation(n) % folds
    return out


def _group_folds(groups: list[str], folds: int) -> Vector:
    import numpy as np

    names = sorted(set(groups))
    index = {g: i % folds for i, g in enumerate(names)}
    return np.array([index[g] for g in groups])


def _cross_fit(x: Any, table: Table, fold: Vector, featurizer: str) -> Vector:
    """Predicted gain of the strong model over the weak, each fold scored by the others."""
    import numpy as np

    score = np.zeros(len(fold))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        model = fit(x[train], table.quality[train], ["weak", "strong"], featurizer_name=featurizer)
        predicted = model.predict(x[test])
        score[test] = predicted[:, 1] - predicted[:, 0]
    return score


def _verifier_score(table: Table, fold: Vector, cache: Path | None) -> Vector:
    """Cascade: the weak model answers; a verifier fitted on (prompt, answer) predicts if it is wrong."""
    import numpy as np

    texts = [
        f"{p[-600:]}\n### answer\n{r[0][-1500:]}" for p, r in zip(table.prompts, table.responses, strict=True)
    ]
    x = prompt_vectors(texts, "hash", cache)
    score = np.zeros(len(fold))
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        model = fit(x[train], table.quality[train][:, [0]], ["weak"])
        score[test] = 1.0 - model.predict(x[test])[:, 0]
    return score
