"""Fit and evaluate a learned router on your own outcome data.

``thrifty route fit --data FILE -o router.npz`` and ``thrifty route eval --data
TEST --router router.npz``. A data file holds one row per prompt: the prompt,
one correctness column per model (0..1) and one cost column per model (USD for
that prompt, named ``<model>|total_cost``), in RouterBench's CSV layout or as
JSONL objects with the same fields. Rows with a missing value are skipped and
counted.

Fitting also picks the cost weight λ by 5-fold cross-validation on the file:
the largest λ (the cheapest routing) whose out-of-fold accuracy reaches
``match`` (default 0.98) times the best single model's, or the most accurate λ when none
does. The λ is saved in the router file, and the ``learned`` policy uses it
unless the config sets ``cost_weight`` or ``quality_target``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..learned import LearnedModel, fit, load
from .data import Table, _number, _prompt
from .metrics import Point, accuracy_at, aiq, cost_to_reach, hull

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Matrix = NDArray[np.float64]

COST = "|total_cost"
LAMBDAS = [0.0] + [10 ** (x / 32) for x in range(-128, 33)]
DEFAULT = "learned, runtime default (λ from CV)"
TARGETS = [round(0.3 + 0.0125 * i, 4) for i in range(57)]


class DataError(ValueError):
    """The data file cannot be read as outcome data (named problem in the message)."""


def load_file(path: Path, fmt: str | None = None) -> Table:
    """A RouterBench-layout CSV or a JSONL of the same fields as a :class:`Table`."""
    fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "routerbench")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "jsonl":
        rows: list[dict[str, Any]] = []
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        fields = list(dict.fromkeys(k for row in rows for k in row))
    else:
        csv.field_size_limit(1 << 30)
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            rows = list(reader)
    return _table(path, fields, rows)


def load_files(paths: list[Path], fmt: str | None = None) -> Table:
    """Several files with the same models, one after the other."""
    import numpy as np

    tables = [load_file(p, fmt) for p in paths]
    first = tables[0]
    for path, t in zip(paths[1:], tables[1:], strict=True):
        if t.models != first.models:
            raise DataError(f"{path}: models differ from {paths[0]}'s")
    return Table(
        [p for t in tables for p in t.prompts],
        first.models,
        np.vstack([t.quality for t in tables]),
        np.vstack([t.cost for t in tables]),
        skipped=sum(t.skipped for t in tables),
    )


def _table(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> Table:
    import numpy as np

    models = [f.removesuffix(COST) for f in fields if f.endswith(COST)]
    if "prompt" not in fields:
        raise DataError(f"{path}: no 'prompt' column")
    missing = [m for m in models if m not in fields]
    if not models or missing:
        raise DataError(
            f"{path}: need a correctness column and a '<model>{COST}' column per model"
            + (f"; no correctness column for {', '.join(missing)}" if missing else "")
        )
    prompts, quality, cost = [], [], []
    skipped = 0
    for row in rows:
        q = [_value(row.get(m)) for m in models]
        c = [_value(row.get(m + COST)) for m in models]
        text = row.get("prompt")
        if any(v is None for v in q + c) or not isinstance(text, str) or not text:
            skipped += 1
            continue
        prompts.append(_prompt(text))
        quality.append([float(v or 0.0) for v in q])
        cost.append([float(v or 0.0) for v in c])
    if len(prompts) < 2:
        raise DataError(f"{path}: fewer than 2 usable rows ({skipped} skipped for missing values)")
    q_arr = np.array(quality)
    if q_arr.min() < 0 or q_arr.max() > 1:
        raise DataError(f"{path}: correctness values must lie in [0, 1]")
    return Table(prompts, models, q_arr, np.array(cost), skipped=skipped)


def _value(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, (int, float)):
        return None if math.isnan(raw) else float(raw)
    return _number(raw) if isinstance(raw, str) else None


def pick(predicted: Matrix, price: Matrix, lam: float) -> Matrix:
    """Per row, the model maximising ``quality - λ * price / max price`` (ties to the cheaper)."""
    import numpy as np

    top = float(price.max()) or 1.0
    out: Matrix = np.argmax(predicted - lam * price / top - 1e-9 * price / top, axis=1)
    return out


def cheapest_clearing(predicted: Matrix, price: Matrix, target: float) -> Matrix:
    """Per row, the cheapest model predicted to clear ``target``; else the best predicted."""
    import numpy as np

    clears = predicted >= target
    cheapest = np.argmin(np.where(clears, price[None, :], np.inf), axis=1)
    out: Matrix = np.where(clears.any(axis=1), cheapest, predicted.argmax(axis=1))
    return out


def outcome(table: Table, choice: Matrix) -> Point:
    import numpy as np

    rows = np.arange(len(choice))
    return float(table.cost[rows, choice].mean()), float(table.quality[rows, choice].mean())


def cv_lambda(vectors: Any, table: Table, featurizer: str, match: float = 0.98, folds: int = 5) -> float:
    """The cost weight chosen by ``folds``-fold cross-validation (see the module docstring)."""
    import numpy as np

    n = len(table.prompts)
    folds = max(2, min(folds, n))
    fold = np.random.default_rng(0).permutation(n) % folds
    predicted = np.zeros_like(table.quality)
    for f in range(folds):
        part = fit(
            vectors[fold != f],
            table.quality[fold != f],
            table.models,
            costs=table.cost[fold != f],
            featurizer_name=featurizer,
        )
        predicted[fold == f] = part.predict(vectors[fold == f])
    price = table.cost.mean(axis=0)
    goal = match * float(table.quality.mean(axis=0).max())
    curve = [(lam, outcome(table, pick(predicted, price, lam))[1]) for lam in sorted(LAMBDAS, reverse=True)]
    for lam, acc in curve:  # from the cheapest routing up
        if acc >= goal - 1e-12:
            return float(lam)
    return float(max(curve, key=lambda c: c[1])[0])


def fit_file(
    paths: list[Path], fmt: str | None, featurizer: str, match: float, cache: Path | None
) -> tuple[LearnedModel, Table]:
    """The router fitted on the whole data, carrying the cross-validated λ; and the data."""
    from .vectors_cache import prompt_vectors

    table = load_files(paths, fmt)
    vectors = prompt_vectors(table.prompts, featurizer, cache)
    model = fit(vectors, table.quality, table.models, costs=table.cost, featurizer_name=featurizer)
    model.cost_weight = cv_lambda(vectors, table, featurizer, match)
    return model, table


@dataclass
class FileReport:
    """Every policy's (cost, accuracy) points on a test file, and the scores derived from them."""

    models: list[str]
    singles: dict[str, Point]
    policies: dict[str, list[Point]]
    oracle: Point
    n: int
    skipped: int
    cost_weight: float | None

    def best(self) -> tuple[str, float, float]:
        name = max(self.singles, key=lambda m: (self.singles[m][1], -self.singles[m][0]))
        return name, self.singles[name][0], self.singles[name][1]

    def rows(self) -> dict[str, dict[str, Any]]:
        costs = [c for c, _ in self.singles.values()]
        low, high = min(costs), max(costs)
        _, best_cost, best_acc = self.best()
        every = {"single-model hull": list(self.singles.values()), **self.policies, "oracle": [self.oracle]}
        out = {}
        for name, points in every.items():
            curve = hull(points)
            reach = cost_to_reach(points, best_acc)
            out[name] = {
                "aiq": aiq(points, low, high) if len(points) > 1 else None,
                "max_accuracy": max(a for _, a in points),
                "cost_to_match_best": reach,
                "share_to_match_best": None if reach is None else reach / best_cost,
                "accuracy_at_25pct": accuracy_at(curve, 0.25 * best_cost)
                if curve[0][0] <= 0.25 * best_cost
                else None,
                "accuracy_at_20pct": accuracy_at(curve, 0.20 * best_cost)
                if curve[0][0] <= 0.20 * best_cost
                else None,
            }
        return out

    def markdown(self) -> str:
        name, best_cost, best_acc = self.best()
        lines = [
            f"{self.n} test prompts ({self.skipped} skipped for missing values), {len(self.models)} models. "
            f"Best single model: **{name}**, accuracy {best_acc:.3f} at ${best_cost * 1000:.4f} per 1,000 prompts. "
            f"Cost weight λ chosen by cross-validation on the training file: "
            f"{'–' if self.cost_weight is None else f'{self.cost_weight:.3g}'}.",
            "",
            "| policy | AIQ | best accuracy | cost to match best ($/1k) | share of best's cost | "
            "accuracy at 25% of its cost | at 20% |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        default = self.policies.get(DEFAULT)
        if default:
            cost, acc = default[0]
            lines[0] += (
                f" The runtime default (λ = {self.cost_weight:.3g}) reaches accuracy {acc:.3f} "
                f"({100 * acc / best_acc:.1f}% of the best's) at ${cost * 1000:.4f} per 1,000 prompts "
                f"({100 * cost / best_cost:.1f}% of the best's cost)."
            )
        for policy, r in self.rows().items():
            reach = r["cost_to_match_best"]
            aiq_text = "–" if r["aiq"] is None else f"{r['aiq']:.3f}"
            lines.append(
                f"| {policy} | {aiq_text} | {r['max_accuracy']:.3f} | "
                f"{'not reached' if reach is None else f'{reach * 1000:.4f}'} | {_pct(r['share_to_match_best'])} | "
                f"{_acc(r['accuracy_at_25pct'], best_acc)} | {_acc(r['accuracy_at_20pct'], best_acc)} |"
            )
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _acc(value: float | None, best: float) -> str:
    return "–" if value is None else f"{value:.3f} ({100 * value / best:.1f}%)"


def evaluate(model: LearnedModel, table: Table, cache: Path | None) -> FileReport:
    """Sweep the router's two decision rules on ``table``; singles, mix hull and oracle beside it."""
    import numpy as np

    from .vectors_cache import prompt_vectors

    unknown = [m for m in table.models if m not in model.models]
    if unknown:
        raise DataError(
            f"the router was not fitted on {', '.join(unknown)} (it knows {', '.join(model.models)})"
        )
    columns = [model.models.index(m) for m in table.models]
    raw = model.predict(prompt_vectors(table.prompts, model.featurizer_name, cache))
    predicted: Matrix = np.asarray(raw[:, columns], dtype=np.float64)
    price = np.asarray(model.mean_cost, np.float64)[columns]
    if not price.any():
        price = table.cost.mean(axis=0)
    singles = {
        m: (float(table.cost[:, j].mean()), float(table.quality[:, j].mean()))
        for j, m in enumerate(table.models)
    }
    policies: dict[str, list[Point]] = {
        "learned, λ rule (sweep)": [outcome(table, pick(predicted, price, lam)) for lam in LAMBDAS],
        "learned, quality_target rule (sweep)": [
            outcome(table, cheapest_clearing(predicted, price, t)) for t in TARGETS
        ],
    }
    if model.cost_weight is not None:
        policies[DEFAULT] = [outcome(table, pick(predicted, price, model.cost_weight))]
    penalty = np.where(table.quality >= 1.0, 0.0, 1e3) + table.cost
    oracle = outcome(table, np.argmin(penalty, axis=1))
    return FileReport(
        list(table.models), singles, policies, oracle, len(table.prompts), table.skipped, model.cost_weight
    )


def plot(report: FileReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    for name, (cost, acc) in report.singles.items():
        ax.scatter([cost * 1000], [acc], marker="o", color="grey", s=18)
        ax.annotate(name.split("/")[-1][:18], (cost * 1000, acc), fontsize=6, alpha=0.8)
    curve = hull(list(report.singles.values()))
    ax.plot(
        [c * 1000 for c, _ in curve], [a for _, a in curve], "--", color="grey", label="single-model hull"
    )
    for name, points in report.policies.items():
        if len(points) == 1:
            ax.scatter([points[0][0] * 1000], [points[0][1]], marker="*", s=140, label=name, zorder=5)
            continue
        curve = hull(points)
        ax.plot([c * 1000 for c, _ in curve], [a for _, a in curve], marker=".", label=name)
    ax.scatter([report.oracle[0] * 1000], [report.oracle[1]], marker="X", s=80, color="black", label="oracle")
    ax.set_xscale("log")
    ax.set_xlabel("average cost per prompt (USD per 1,000 prompts, log scale)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fit_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="thrifty route fit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--data",
        type=Path,
        action="append",
        help="training file (RouterBench CSV or JSONL); repeat to concatenate files",
    )
    source.add_argument(
        "--ledger",
        nargs="?",
        const="",
        metavar="PATH",
        help="learn from the gateway's ledger: its prompt log, ratings and cascade verdicts "
        "(default path: from --config, else .thrifty/ledger.db)",
    )
    p.add_argument(
        "--format", choices=("routerbench", "jsonl"), default=None, help="default: from the suffix"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="where to write the router (.npz)")
    p.add_argument("--featurizer", choices=("minilm", "hash", "minilm+hash"), default="minilm")
    p.add_argument(
        "--match",
        type=float,
        default=0.98,
        help="cross-validation picks the cheapest λ reaching this share of the best model's accuracy",
    )
    p.add_argument("--cache", type=Path, default=None, help="folder to cache prompt vectors in")
    ledger = p.add_argument_group("with --ledger")
    ledger.add_argument("--config", help="the gateway's config: its ledger, tier names and routers")
    ledger.add_argument("--router", help="fit the candidate tiers of this router (needs --config)")
    ledger.add_argument("--key", help="only this key id's requests (as in the ledger's api_key column)")
    ledger.add_argument("--min-rows", type=int, default=20, help="prompts with an outcome needed, at least")
    args = p.parse_args(argv)
    if args.ledger is not None:
        from .ledgerdata import fit_ledger

        return fit_ledger(args)
    try:
        model, table = fit_file(args.data, args.format, args.featurizer, args.match, args.cache)
    except DataError as exc:
        print(f"thrifty route fit: {exc}")
        return 2
    model.save(args.output)
    print(
        f"fitted {len(model.models)} models on {len(model.vectors)} prompts ({table.skipped} skipped for missing values); "
        f"cost weight λ = {model.cost_weight or 0.0:.4g} by 5-fold CV; saved {args.output}"
    )
    return 0


def eval_file_main(args: argparse.Namespace) -> int:
    try:
        model = load(args.router)
        table = load_files(args.data, args.format)
        report = evaluate(model, table, args.cache)
    except (DataError, ValueError) as exc:
        print(f"thrifty route eval: {exc}")
        return 2
    text = report.markdown()
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if args.plots:
        out = args.plots / f"routing_{args.data[0].stem}.png"
        plot(report, out, f"{', '.join(p.name for p in args.data)}: learned router vs single models")
        print(f"plot: {out}")
    return 0
