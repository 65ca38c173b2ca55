"""Training rows for the learned router from the gateway's own ledger.

``thrifty route fit --ledger [PATH] -o router.npz``. A row is a prompt from the
prompt log (``ledger.log_prompts: true``: the text the router reads, kept per
request) and, per model, the outcomes observed for it:

- a rating from ``POST /v1/feedback`` of the answer that model gave, scaled
  from 1-5 to 0-1 as the feedback learner scales it (5 good: 1; 1 bad: 0);
- a cascade verifier's verdict on that model's answer: 1 accepted, 0 rejected
  (the answer served, ``requests.verdict``; the answers escalated from, the
  ``escalated`` rows linked to the request).

Several outcomes of one (prompt, model) are averaged; the models not observed
on a prompt are NaN, and the fit uses each model's observed rows only. A
model is named by the route's tier when the request was routed, else by the
model group asked; with ``--config`` a group that is one tier's model takes
that tier's name, so both kinds of request count for one model. Costs are the
mean ``cost_usd`` of each model's priced, answered, uncached rows. Rows of
failed requests and requests without a logged prompt are left out.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from ...config import Config

MIN_PROMPTS = 20  # prompts with an outcome, at least
MIN_PER_MODEL = 5  # outcomes a model needs to be kept


class LedgerError(ValueError):
    """The ledger cannot give training rows (no prompt log, too few outcomes); the message says why."""


@dataclass
class LedgerRows:
    """Sparse outcome data: ``quality[i, j]`` is NaN where model j was not observed on prompt i."""

    prompts: list[str]
    models: list[str]
    quality: NDArray[np.float64]  # (n, m), NaN: not observed
    cost: NDArray[np.float64]  # (m,) mean USD per answered prompt
    ratings: int = 0  # outcomes from ratings
    verdicts: int = 0  # outcomes from cascade verdicts
    logged: int = 0  # prompts in the prompt log
    dropped: dict[str, int] = field(default_factory=dict)  # models left out: their outcome count


def rating_outcome(rating: int) -> float:
    """A 1-5 rating as an outcome in [0, 1] (the feedback learner's scale)."""
    return (min(5, max(1, rating)) - 1) / 4.0


def read_ledger(
    path: str,
    *,
    names: Mapping[str, str] | None = None,
    models: list[str] | None = None,
    key: str | None = None,
    since: float = 0.0,
    min_prompts: int = MIN_PROMPTS,
    min_per_model: int = MIN_PER_MODEL,
) -> LedgerRows:
    """The training rows in the ledger at ``path``.

    ``names`` renames models (group -> tier); ``models`` keeps only those;
    ``key`` keeps one owner's requests (a key id as in the ledger).
    Raises :class:`LedgerError` when there is no prompt log or too little data.
    """
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
    try:
        return _read(db, path, names or {}, models, key, since, min_prompts, min_per_model)
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
    finally:
        db.close()


def _read(
    db: sqlite3.Connection,
    path: str,
    names: Mapping[str, str],
    keep: list[str] | None,
    key: str | None,
    since: float,
    min_prompts: int,
    min_per_model: int,
) -> LedgerRows:
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "requests" not in tables:
        raise LedgerError(f"{path} is not a thrifty ledger (no requests table)")
    columns = {row[1] for row in db.execute("PRAGMA table_info(requests)")}
    logged = db.execute("SELECT COUNT(*) FROM prompts").fetchone()[0] if "prompts" in tables else 0
    if not logged or "purpose" not in columns:
        raise LedgerError(
            f"{path} has no prompt log: set `ledger: {{log_prompts: true}}` in the gateway's config, "
            "serve traffic (with ratings or a cascade), then fit"
        )
    owner = " AND p.api_key = ?" if key is not None else ""
    args: tuple[object, ...] = (since, key) if key is not None else (since,)
    texts: dict[str, str] = {}
    answered: dict[str, str] = {}  # request id -> model that answered
    outcomes: dict[tuple[str, str], list[float]] = defaultdict(list)
    costs: dict[str, list[float]] = defaultdict(list)
    ratings = verdicts = 0

    def name(tier: str, model: str) -> str:
        found = tier or model
        return names.get(found, found)

    main = db.execute(
        "SELECT r.request_id, p.text, r.tier, r.model, r.verdict, r.cost_usd, r.priced, r.cache"
        " FROM prompts p JOIN requests r ON r.request_id = p.request_id AND r.purpose = ''"
        f" WHERE r.status < 400 AND p.ts >= ?{owner}",
        args,
    )

    def answer(rid: str, m: str, verdict: float | None, cost: float | None, priced: int, cache: str) -> None:
        """One answer's verdict (if the cascade judged it) and price (if it was paid for)."""
        nonlocal verdicts
        if verdict is not None:
            outcomes[(rid, m)].append(float(verdict))
            verdicts += 1
        if priced and not str(cache).startswith("hit"):
            costs[m].append(float(cost or 0.0))

    for rid, text, tier, model, verdict, cost, priced, cache in main:
        m = name(tier, model)
        texts[rid], answered[rid] = text, m
        answer(rid, m, verdict, cost, priced, cache)
    extra = db.execute(
        "SELECT e.parent_id, e.tier, e.verdict, e.cost_usd, e.priced, e.cache, r.model"
        " FROM requests e JOIN prompts p ON p.request_id = e.parent_id"
        " JOIN requests r ON r.request_id = e.parent_id AND r.purpose = ''"
        f" WHERE e.purpose = 'escalated' AND p.ts >= ?{owner}",
        args,
    )
    for parent, tier, verdict, cost, priced, cache, model in extra:
        if parent not in texts:
            continue  # the request failed in the end: its answers are not compared
        answer(parent, name(tier, model), verdict, cost, priced, cache)
    rated = db.execute(
        "SELECT f.response_id, f.rating FROM feedback f JOIN prompts p ON p.request_id = f.response_id"
        f" WHERE p.ts >= ?{owner}",
        args,
    )
    for rid, rating in rated:
        if rid in answered:
            outcomes[(rid, answered[rid])].append(rating_outcome(int(rating)))
            ratings += 1
    return _rows(texts, outcomes, costs, keep, ratings, verdicts, logged, min_prompts, min_per_model, path)


def _rows(
    texts: dict[str, str],
    outcomes: dict[tuple[str, str], list[float]],
    costs: dict[str, list[float]],
    keep: list[str] | None,
    ratings: int,
    verdicts: int,
    logged: int,
    min_prompts: int,
    min_per_model: int,
    path: str,
) -> LedgerRows:
    import numpy as np

    counts: dict[str, int] = defaultdict(int)
    for _, m in outcomes:
        counts[m] += 1
    candidates = list(keep) if keep else sorted(counts)
    models = [m for m in candidates if counts.get(m, 0) >= min_per_model]
    dropped = {m: counts.get(m, 0) for m in candidates if m not in models}
    if len(models) < 2:
        seen = ", ".join(f"{m}: {n}" for m, n in sorted(counts.items())) or "none"
        raise LedgerError(
            f"{path}: too few outcomes to compare models: need at least {min_per_model} per model for "
            f"2 models (outcomes per model: {seen}); rate answers with POST /v1/feedback or serve a cascade"
        )
    ids = sorted({rid for rid, m in outcomes if m in models})
    if len(ids) < min_prompts:
        raise LedgerError(
            f"{path}: {len(ids)} prompts with an outcome; need at least {min_prompts} "
            f"({logged} prompts logged, {ratings} ratings, {verdicts} cascade verdicts)"
        )
    column = {m: j for j, m in enumerate(models)}
    quality = np.full((len(ids), len(models)), np.nan)
    for i, rid in enumerate(ids):
        for m, j in column.items():
            values = outcomes.get((rid, m))
            if values:
                quality[i, j] = sum(values) / len(values)
    cost = np.array([_mean(costs.get(m, [])) for m in models])
    return LedgerRows([texts[rid] for rid in ids], models, quality, cost, ratings, verdicts, logged, dropped)


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else 0.0


def config_names(config: Config, router: str | None = None) -> tuple[dict[str, str], list[str] | None]:
    """From a gateway config: group -> tier renames (a group that is one tier's model), and the
    models to keep (``router``'s candidate tiers; None: every model)."""
    from ..settings import parse_routing

    routing = parse_routing(config)
    if routing is None:
        if router is not None:
            raise LedgerError(f"--router {router}: the config has no routing section")
        return {}, None
    by_group: dict[str, list[str]] = defaultdict(list)
    for tier in routing.tiers:
        by_group[tier.group].append(tier.name)
    names = {group: tiers[0] for group, tiers in by_group.items() if len(tiers) == 1 and group != tiers[0]}
    if router is None:
        return names, None
    for spec in routing.routers:
        if spec.name == router:
            return names, list(spec.candidates)
    known = ", ".join(spec.name for spec in routing.routers) or "none"
    raise LedgerError(f"--router {router}: no such router in the config (routers: {known})")


def fit_ledger(args: argparse.Namespace) -> int:
    """``thrifty route fit --ledger``: the router fitted on the ledger's rows, saved to ``args.output``."""
    from ...config import load_config
    from ...errors import ConfigError
    from ...observe.usage import default_ledger
    from ..learned import fit
    from .vectors_cache import prompt_vectors

    try:
        config = load_config(args.config) if args.config else None
        names, keep = config_names(config, args.router) if config is not None else ({}, None)
        path = args.ledger or default_ledger(args.config)
        rows = read_ledger(path, names=names, models=keep, key=args.key, min_prompts=args.min_rows)
    except (ConfigError, LedgerError) as exc:
        print(f"thrifty route fit: {exc}")
        return 2
    vectors = prompt_vectors(rows.prompts, args.featurizer, args.cache)
    model = fit(vectors, rows.quality, rows.models, featurizer_name=args.featurizer)
    model.mean_cost = rows.cost.astype("float32")
    model.save(args.output)
    observed = int((~_isnan(rows.quality)).sum())
    left_out = "".join(f"; left out {m} ({n} outcomes)" for m, n in rows.dropped.items())
    print(
        f"fitted {len(rows.models)} models ({', '.join(rows.models)}) on {len(rows.prompts)} prompts from "
        f"{path}: {observed} outcomes ({rows.ratings} ratings, {rows.verdicts} cascade verdicts) of "
        f"{len(rows.prompts) * len(rows.models)} (prompt, model) pairs{left_out}; no cost weight saved "
        f"(the learned policy uses the config's rule, else quality_target 0.7); saved {args.output}"
    )
    return 0


def _isnan(values: NDArray[np.float64]) -> NDArray[np.bool_]:
    import numpy as np

    out: NDArray[np.bool_] = np.isnan(values)
    return out
