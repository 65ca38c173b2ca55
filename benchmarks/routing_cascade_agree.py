"""Issue 15, offline: a cascade that checks answers by agreement, on RouterBench's multiple-choice tasks.

    PYTHONPATH=src .venv/bin/python benchmarks/routing_cascade_agree.py

ARC-Challenge and Winogrande (the multiple-choice part of the RouterBench slice in
../shared/data/routing): each stored response is reduced to its answer letter (first A-D or 1-2
token). The agreement cascade asks two cheap models (paying both); when their letters agree the
answer is accepted, otherwise the request escalates to a third model (paying it too). Every
(cheap pair, escalation model) configuration is scored on the train files; the configurations on
the train Pareto front (cost vs accuracy) are then reported on the test files, next to the single
models' hull, the learned router (fit on train, λ swept) and the oracle.
"""

from __future__ import annotations

import itertools
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.routing.evaluation.cli import default_data  # noqa: E402
from thrifty.routing.evaluation.data import Table, load_routerbench  # noqa: E402
from thrifty.routing.evaluation.metrics import Point, accuracy_at, aiq, cost_to_reach, hull  # noqa: E402
from thrifty.routing.evaluation.owndata import LAMBDAS, outcome, pick  # noqa: E402
from thrifty.routing.evaluation.vectors_cache import prompt_vectors  # noqa: E402
from thrifty.routing.learned import fit  # noqa: E402

_LETTER = re.compile(r"\b([A-D]|[12])\b")


def letters(table: Table) -> np.ndarray:
    out = np.full(table.quality.shape, "?", dtype=object)
    for i, row in enumerate(table.responses):
        for j, text in enumerate(row):
            found = _LETTER.search(text.replace("\\n", " "))
            if found:
                out[i, j] = found.group(1)
    return out


def subset(table: Table, keep: np.ndarray) -> Table:
    rows = np.flatnonzero(keep)
    return Table(
        [table.prompts[i] for i in rows],
        table.models,
        table.quality[rows],
        table.cost[rows],
        [table.groups[i] for i in rows],
        [table.responses[i] for i in rows],
    )


def cascade(table: Table, said: np.ndarray, a: int, b: int, top: int) -> Point:
    agree = (said[:, a] == said[:, b]) & (said[:, a] != "?")
    cost = table.cost[:, a] + table.cost[:, b] + np.where(agree, 0.0, table.cost[:, top])
    acc = np.where(agree, table.quality[:, a], table.quality[:, top])
    return float(cost.mean()), float(acc.mean())


def routed_cascade(
    table: Table,
    said: np.ndarray,
    start: np.ndarray,
    peer: int,
    top: int,
    sure: np.ndarray | None = None,
) -> Point:
    """The router picks where to start; unless it picked ``top`` (or the peer itself), the peer
    answers too (paid) and a disagreement escalates to ``top`` (paid). With ``sure`` (a boolean
    per prompt: the router's own estimate for its pick clears a bar) the peer is asked only
    where the router is unsure."""
    rows = np.arange(len(start))
    verify = (start != top) & (start != peer)
    if sure is not None:
        verify &= ~sure
    agree = (said[rows, start] == said[:, peer]) & (said[rows, start] != "?")
    escalate = verify & ~agree
    cost = (
        table.cost[rows, start]
        + np.where(verify, table.cost[:, peer], 0.0)
        + np.where(escalate, table.cost[:, top], 0.0)
    )
    acc = np.where(escalate, table.quality[:, top], table.quality[rows, start])
    return float(cost.mean()), float(acc.mean())


def out_of_fold(table: Table, vectors: np.ndarray, folds: int = 5) -> np.ndarray:
    """Each train prompt's predicted quality from a router fitted without its fold: the honest
    confidence to choose a cascade's settings on (in-sample predictions are overconfident)."""
    n = len(table.prompts)
    fold = np.random.default_rng(0).permutation(n) % folds
    out = np.zeros(table.quality.shape)
    for f in range(folds):
        held = fold == f
        model = fit(
            vectors[~held],
            table.quality[~held],
            table.models,
            costs=table.cost[~held],
            featurizer_name="minilm",
        )
        out[held] = model.predict(vectors[held])
    return out


def scores(name: str, points: list[Point], low: float, high: float, best_cost: float, best: float) -> str:
    reach, curve = cost_to_reach(points, best), hull(points)
    at = [
        accuracy_at(curve, f * best_cost) / best if curve[0][0] <= f * best_cost else None
        for f in (0.25, 0.2)
    ]
    share = "not reached" if reach is None else f"{100 * reach / best_cost:.1f}%"
    cells = " | ".join("–" if v is None else f"{100 * v:.1f}%" for v in at)
    return f"| {name} | {aiq(points, low, high):.3f} | {max(p[1] for p in points):.3f} | {share} | {cells} |"


def main() -> None:
    data = default_data()
    train_all, test_all = load_routerbench(data, "train"), load_routerbench(data, "test")
    mc = ("arc_challenge", "winograde")
    train = subset(train_all, np.array([g in mc for g in train_all.groups]))
    test = subset(test_all, np.array([g in mc for g in test_all.groups]))
    said_tr, said_te = letters(train), letters(test)
    m = len(train.models)
    price = train.cost.mean(0)
    configs = [
        (a, b, t)
        for a, b in itertools.combinations(range(m), 2)
        for t in range(m)
        if t not in (a, b) and price[t] > max(price[a], price[b])
    ]
    on_train = {c: cascade(train, said_tr, *c) for c in configs}
    front = [c for c in configs if on_train[c] in hull(list(on_train.values()))]
    singles = [(float(test.cost[:, j].mean()), float(test.quality[:, j].mean())) for j in range(m)]
    best_j = int(np.argmax([a for _, a in singles]))
    best_cost, best = singles[best_j]
    low, high = min(c for c, _ in singles), max(c for c, _ in singles)
    cache = ROOT / "benchmarks" / "out"
    router = fit(
        prompt_vectors(train_all.prompts, "minilm", cache),
        train_all.quality,
        train_all.models,
        costs=train_all.cost,
        featurizer_name="minilm",
    )
    predicted = router.predict(prompt_vectors(test.prompts, "minilm", cache)).astype(np.float64)
    learned = [outcome(test, pick(predicted, price, lam)) for lam in LAMBDAS]
    casc = [cascade(test, said_te, *c) for c in front]
    # router + cascade: configurations (λ, peer, top) chosen on train (in-sample router predictions)
    fitted = router.predict(prompt_vectors(train.prompts, "minilm", cache)).astype(np.float64)
    starts_tr = {lam: pick(fitted, price, lam) for lam in LAMBDAS}
    starts_te = {lam: pick(predicted, price, lam) for lam in LAMBDAS}
    combos = [(lam, b, t) for lam in LAMBDAS for b in range(m) for t in range(m) if price[t] > price[b]]
    on_train_rc = {c: routed_cascade(train, said_tr, starts_tr[c[0]], c[1], c[2]) for c in combos}
    front_rc = [c for c in combos if on_train_rc[c] in hull(list(on_train_rc.values()))]
    routed = [routed_cascade(test, said_te, starts_te[lam], b, t) for lam, b, t in front_rc]
    # router + cascade gated by the router's confidence: the peer is asked only when the router's
    # estimate for its pick is below τ. Settings (λ, peer, top, τ) chosen on out-of-fold train
    # predictions; τ = 0 is the router alone, τ > 1 the ungated cascade.
    train_all_vectors = prompt_vectors(train_all.prompts, "minilm", cache)
    oof_all = out_of_fold(train_all, train_all_vectors)
    keep_tr = np.array([g in mc for g in train_all.groups])
    oof = oof_all[keep_tr]
    taus = [0.0, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 1.01]
    gated_combos = [(lam, b, t, tau) for lam, b, t in combos for tau in taus]

    def gated(table: Table, said: np.ndarray, pred: np.ndarray, c: tuple[float, int, int, float]) -> Point:
        lam, b, t, tau = c
        start = pick(pred, price, lam)
        sure = pred[np.arange(len(start)), start] >= tau
        return routed_cascade(table, said, start, b, t, sure)

    on_train_g = {c: gated(train, said_tr, oof, c) for c in gated_combos}
    front_g = [c for c in gated_combos if on_train_g[c] in hull(list(on_train_g.values()))]
    gated_te = [gated(test, said_te, predicted, c) for c in front_g]
    rows = [
        ("single-model hull", singles),
        ("learned router (λ sweep)", learned),
        ("agreement cascade (train-front configurations)", casc),
        ("router ∪ cascade (either, per budget)", learned + casc),
        ("router-started cascade (router picks the start, a peer's agreement escalates)", routed),
        ("router ∪ router-started cascade", learned + routed),
        ("router-started cascade, peer asked only when the router is unsure (OOF-chosen)", gated_te),
        ("router ∪ gated cascade", learned + gated_te),
    ]
    unread = float((said_te == "?").mean())
    print(
        f"{len(test.prompts)} test prompts (ARC + Winogrande), {len(train.prompts)} train; best single model "
        f"{test.models[best_j]} {best:.3f} at ${best_cost * 1000:.4f}/1k; letters unreadable in {100 * unread:.1f}% "
        f"of responses; {len(front)} configurations on the train front: "
        + ", ".join(
            f"{test.models[a].split('/')[-1]}+{test.models[b].split('/')[-1]}→{test.models[t].split('/')[-1]}"
            for a, b, t in front
        )
    )
    print(
        f"Router-started cascade: {len(front_rc)} (λ, peer, escalation) configurations on the train front: "
        + ", ".join(
            f"λ={lam:g} {test.models[b].split('/')[-1]}→{test.models[t].split('/')[-1]}"
            for lam, b, t in front_rc
        )
    )
    taus_used = sorted({c[3] for c in front_g})
    print(
        f"Gated cascade: {len(front_g)} (λ, peer, escalation, τ) configurations on the out-of-fold train "
        f"front, τ in {taus_used}"
    )
    print()
    print(
        "| policy | AIQ | best accuracy | share of best's cost to match it | accuracy at 25% of its cost | at 20% |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, points in rows:
        print(scores(name, points, low, high, best_cost, best))
    oracle = np.argmin(np.where(test.quality >= 1.0, 0.0, 1e3) + test.cost, axis=1)
    print(
        f"| oracle | – | {outcome(test, oracle)[1]:.3f} | {100 * outcome(test, oracle)[0] / best_cost:.1f}% | – | – |"
    )


if __name__ == "__main__":
    main()
