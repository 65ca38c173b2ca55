"""Fitting a pair model (:mod:`.pairs`) on labelled question pairs, with numpy only.

``fit(pairs, vectors)`` turns each pair into features (pairs refused by a hard
veto, or under the cosine floor, are never served and are left out of the
fit), estimates out-of-fold probabilities by k-fold cross-validation with
folds that share no question text, picks the lowest threshold whose
out-of-fold false-hit rate stays within ``max_false_hits``, and fits the final
model on every pair. A pair the strict verifier passes (at the cache's cosine
threshold, ``strict_at``) is served whatever the model says, so the budget is
shared with it. Rates are over all pairs of the file (a vetoed
duplicate counts as a miss), as the cache would see them.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .pairs import FEATURE_SETS, PairModel, features, uses_tokens, veto
from .verify import Verdict, align, verify

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from .pairs import Tokens

    Array = NDArray[Any]


@dataclass(frozen=True, slots=True)
class LabelledPair:
    cached: str
    query: str
    same: bool


@dataclass(frozen=True)
class FitSettings:
    kind: str = "tokens"  # one of pairs.FEATURE_SETS
    hidden: int = 0  # 0: logistic regression; n: one hidden layer of n ReLU units
    max_false_hits: float = 0.01
    floor: float = 0.7
    folds: int = 5
    l2: float | None = None  # ridge penalty; None: one per eight features (more for the vector sets)
    strict_at: float = 0.85  # the cache's cosine threshold: pairs the strict verifier passes there are served
    seed: int = 0


@dataclass(frozen=True)
class Rates:
    recall: float
    false_hit_rate: float
    precision: float
    hits: int
    positives: int
    negatives: int


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """CSV (question1,question2,is_duplicate) or JSONL with the same fields."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if path.suffix in (".jsonl", ".ndjson"):
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        rows = list(csv.DictReader(text.splitlines()))
    pairs = []
    for n, row in enumerate(rows, 1):
        try:
            label = str(row["is_duplicate"]).strip().lower()
            pairs.append(LabelledPair(str(row["question1"]), str(row["question2"]), label in ("1", "true")))
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{path} row {n}: needs question1, question2, is_duplicate") from exc
    return pairs


def question_groups(pairs: Sequence[LabelledPair]) -> list[int]:
    """A group per pair such that two pairs sharing a question (by text) share a group."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def key(text: str) -> str:
        return " ".join(text.casefold().split())

    for p in pairs:
        a, b = root(key(p.cached)), root(key(p.query))
        if a != b:
            parent[a] = b
    ids: dict[str, int] = {}
    return [ids.setdefault(root(key(p.cached)), len(ids)) for p in pairs]


def split_groups(groups: Sequence[int], parts: int, seed: int) -> list[int]:
    """Assign each pair a part in 0..parts-1; every group goes whole to one part, parts balanced."""
    sizes: dict[int, int] = {}
    for g in groups:
        sizes[g] = sizes.get(g, 0) + 1
    order = list(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -sizes[g])
    load, part_of = [0] * parts, {}
    for g in order:
        part = min(range(parts), key=lambda i: load[i])
        part_of[g] = part
        load[part] += sizes[g]
    return [part_of[g] for g in groups]


def featurize(
    pairs: Sequence[LabelledPair],
    vectors: Callable[[str], Array],
    kind: str,
    floor: float,
    tokens: Tokens | None = None,
) -> tuple[Array, list[int]]:
    """Features of the pairs a model would score, and their positions in ``pairs``."""
    import numpy as np

    rows, keep = [], []
    for i, p in enumerate(pairs):
        u, v = vectors(p.query), vectors(p.cached)
        if float(u @ v) < floor or not scorable(p.query, p.cached):
            continue
        found = align(p.query, p.cached)
        assert not isinstance(found, Verdict)
        pair = None
        if uses_tokens(kind):
            assert tokens is not None, f"feature set {kind} needs token vectors"
            tq, tc = tokens([p.query, p.cached])
            pair = (tq, tc)
        rows.append(features(kind, found, p.query, p.cached, u, v, pair))
        keep.append(i)
    dim = len(rows[0]) if rows else 1
    return (np.stack(rows) if rows else np.zeros((0, dim), dtype=np.float32)), keep


def scorable(query: str, cached: str) -> bool:
    """Whether no hard veto refuses the pair (what PairModel.judge checks before scoring)."""
    found = align(query, cached)
    if isinstance(found, Verdict) or veto(found):
        return False
    latin = all(c <= "\u024f" for w in found.query + found.cached for c in w.stem)
    return latin or verify(query, cached).ok


def _logistic(x: Array, y: Array, l2: float) -> list[tuple[Array, Array]]:
    """L2-regularised logistic regression by Newton's method (the bias is not penalised)."""
    import numpy as np

    n, d = x.shape
    xb = np.hstack([x, np.ones((n, 1))]).astype(np.float64)
    w = np.zeros(d + 1)
    penalty = np.full(d + 1, l2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return [(w[:-1, None].astype(np.float32), w[-1:].astype(np.float32))]


def _mlp(x: Array, y: Array, hidden: int, l2: float, seed: int) -> list[tuple[Array, Array]]:
    """One ReLU hidden layer, full-batch Adam on log-loss with weight decay."""
    import numpy as np

    rng = np.random.default_rng(seed)
    n, d = x.shape
    params = [
        rng.normal(0, math.sqrt(2 / d), (d, hidden)),
        np.zeros(hidden),
        rng.normal(0, math.sqrt(1 / hidden), (hidden, 1)),
        np.zeros(1),
    ]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    decay = l2 / n
    for t in range(1, 401):
        w1, b1, w2, b2 = params
        h = np.maximum(x @ w1 + b1, 0.0)
        p = 1.0 / (1.0 + np.exp(-np.clip((h @ w2 + b2)[:, 0], -40, 40)))
        dz = ((p - y) / n)[:, None]
        dh = (dz @ w2.T) * (h > 0)
        grads = [x.T @ dh + decay * w1, dh.sum(0), h.T @ dz + decay * w2, dz.sum(0)]
        for i, g in enumerate(grads):
            m, v = moments[i]
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            moments[i] = (m, v)
            params[i] = params[i] - 0.003 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    out = [p.astype(np.float32) for p in params]
    return [(out[0], out[1]), (out[2], out[3])]


def _train(x: Array, y: Array, settings: FitSettings) -> tuple[Array, Array, list[tuple[Array, Array]]]:
    import numpy as np

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-6] = 1.0
    z = (x - mean) / scale
    l2 = settings.l2 if settings.l2 is not None else max(1.0, x.shape[1] / 8)
    layers = _mlp(z, y, settings.hidden, l2, settings.seed) if settings.hidden else _logistic(z, y, l2)
    return mean.astype(np.float32), scale.astype(np.float32), layers


def pick_threshold(scores: Array, same: Array, limit: float) -> float:
    """The lowest threshold at which the share of negatives scoring at or above it is <= limit.

    ``scores`` holds -1 for pairs that are never served (vetoed, under the floor).
    """
    import numpy as np

    negatives = np.sort(scores[~same])[::-1]
    allowed = int(math.floor(limit * len(negatives) + 1e-9))
    candidates = scores[scores >= 0]
    lowest = float(candidates.min()) if len(candidates) else 1.0
    if allowed >= len(negatives) or negatives[allowed] < 0:
        return lowest
    return max(lowest, float(np.nextafter(negatives[allowed], 2.0)))


def rates(served: Array, same: Array) -> Rates:
    hits = int(served.sum())
    pos, neg = int(same.sum()), int((~same).sum())
    return Rates(
        recall=float(served[same].sum() / max(1, pos)),
        false_hit_rate=float(served[~same].sum() / max(1, neg)),
        precision=float(same[served].mean()) if hits else float("nan"),
        hits=hits,
        positives=pos,
        negatives=neg,
    )


def fit(
    pairs: Sequence[LabelledPair],
    vectors: Callable[[str], Array],
    settings: FitSettings,
    tokens: Tokens | None = None,
) -> tuple[PairModel, Rates]:
    """The model fitted on every pair, its threshold from cross-validation, and the CV rates."""
    import numpy as np

    if settings.kind not in FEATURE_SETS:
        raise ConfigError(f"feature set must be one of {', '.join(FEATURE_SETS)}")
    same = np.array([p.same for p in pairs], dtype=bool)
    x, keep = featurize(pairs, vectors, settings.kind, settings.floor, tokens)
    y = same[keep].astype(np.float64)
    if len(keep) < 2 * settings.folds or y.min() == y.max():
        raise ConfigError(
            f"too few pairs to fit: {int(y.sum())} same and {int(len(y) - y.sum())} different pass the "
            f"vetoes at cosine >= {settings.floor} (--floor lowers it)"
        )
    fold = np.array(split_groups(question_groups(pairs), settings.folds, settings.seed))[keep]
    oof = np.full(len(pairs), -1.0)
    where = np.array(keep)
    for k in range(settings.folds):
        test = fold == k
        if not test.any() or y[~test].min() == y[~test].max():
            continue
        mean, scale, layers = _train(x[~test], y[~test], settings)
        model = PairModel(settings.kind, mean, scale, layers, 0.5, settings.floor)
        oof[where[test]] = model.probability(x[test])
    strict = strict_hits(pairs, vectors, settings.strict_at)
    threshold = pick_threshold(np.where(strict, 2.0, oof), same, settings.max_false_hits)
    cv = rates((oof >= threshold) | strict, same)
    mean, scale, layers = _train(x, y, settings)
    meta = {
        "cv_recall": cv.recall,
        "cv_false_hit_rate": cv.false_hit_rate,
        "max_false_hits": settings.max_false_hits,
        "pairs": float(len(pairs)),
        "hidden": float(settings.hidden),
    }
    return PairModel(settings.kind, mean, scale, layers, threshold, settings.floor, meta), cv


def strict_hits(pairs: Sequence[LabelledPair], vectors: Callable[[str], Array], strict_at: float) -> Array:
    """The pairs the strict verifier serves at cosine ``strict_at`` (a pair model keeps them)."""
    import numpy as np

    return np.array(
        [
            float(vectors(p.query) @ vectors(p.cached)) >= strict_at and verify(p.query, p.cached).ok
            for p in pairs
        ],
        dtype=bool,
    )


def scores(
    model: PairModel,
    pairs: Sequence[LabelledPair],
    vectors: Callable[[str], Array],
    tokens: Tokens | None = None,
    strict_at: float = 2.0,
) -> Array:
    """Each pair's score as the cache would compute it; -1 when never served (vetoed, under the floor).

    A pair the strict verifier passes at cosine ``strict_at`` scores at least the model's threshold.
    """
    import numpy as np

    out = np.full(len(pairs), -1.0)
    strict = strict_hits(pairs, vectors, strict_at)
    for i, p in enumerate(pairs):
        u, v = vectors(p.query), vectors(p.cached)
        if float(u @ v) >= model.floor:
            judgement = model.judge(p.query, p.cached, u, v, tokens)
            if not judgement.refused:
                out[i] = max(judgement.score, model.threshold) if strict[i] else judgement.score
    return out


def serve(
    model: PairModel,
    pairs: Sequence[LabelledPair],
    vectors: Callable[[str], Array],
    tokens: Tokens | None = None,
    strict_at: float = 0.85,
) -> Array:
    """Which pairs the cache would serve with this model (strict hits, vetoes, floor and threshold)."""
    return scores(model, pairs, vectors, tokens, strict_at) >= model.threshold
