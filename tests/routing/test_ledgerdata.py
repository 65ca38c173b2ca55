"""Training rows from the ledger: the prompt log joined with ratings and cascade verdicts."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from thrifty.config import parse_config
from thrifty.observe import Observer, RequestEvent
from thrifty.routing.evaluation.ledgerdata import LedgerError, config_names, read_ledger
from thrifty.routing.evaluation.owndata import fit_main
from thrifty.types import RouteDecision, UpstreamCall, Usage

from .conftest import TIERS

MODELS = [
    {"name": g, "deployments": [{"provider": "fake", "model": g, "price_model": "openai/gpt-4o-mini"}]}
    for g in ("small", "medium", "large")
]


def observer(tmp_path: Path, log_prompts: bool = True) -> Observer:
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "ledger": {"log_prompts": log_prompts},
            "models": MODELS,
            "routing": {"tiers": TIERS, "routers": [{"name": "auto", "policy": "rules"}]},
        },
        source="thrifty.yaml",
    )
    return Observer(config)


def answered(
    rid: str,
    text: str,
    tier: str = "",
    *,
    model: str = "auto",
    verdict: bool | None = None,
    calls: list[UpstreamCall] | None = None,
    key: str = "k1",
    status: int = 200,
) -> RequestEvent:
    group = {"fast": "small", "balanced": "medium", "powerful": "large"}.get(tier, model)
    route = None
    if tier:
        route = RouteDecision(router="auto", policy="cascade", tier=tier, model=group)
        if verdict is not None:
            route.verdicts[tier] = verdict
    return RequestEvent(
        request_id=rid,
        ts=time.time(),
        model=model,
        deployment=f"{group}/fake/{group}",
        stream=False,
        status=status,
        error_type=None if status < 400 else "upstream_error",
        prompt_tokens=100,
        completion_tokens=10,
        cached_tokens=0,
        latency_s=0.1,
        ttft_s=None,
        overhead_s=0.001,
        attempts=1,
        api_key=key,
        tenant="",
        route=route,
        calls=calls or [],
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
    )


def escalated(rid: str, tier: str) -> UpstreamCall:
    group = {"fast": "small", "balanced": "medium"}[tier]
    return UpstreamCall(
        "escalated", f"{rid}-{tier}", group, f"{group}/fake/{group}", Usage(100, 5), tier=tier, verdict=False
    )


def rate(obs: Observer, rid: str, rating: int, owner: str = "k1") -> None:
    assert obs.ledger is not None
    obs.ledger.add_feedback({"response_id": rid, "ts": time.time(), "rating": rating, "owner": owner})


async def fill(obs: Observer, events: list[RequestEvent], ratings: dict[str, int]) -> str:
    await obs.start()
    for ev in events:
        obs.record(ev)
    obs.flush(force=True)
    for rid, rating in ratings.items():
        rate(obs, rid, rating)
    await obs.aclose()
    return obs.ledger_settings.path


async def test_ratings_and_verdicts_join_the_prompt_log(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    events = [
        answered("r1", "rated good on fast", "fast"),
        answered("r2", "accepted on fast", "fast", verdict=True),
        answered("r3", "escalated from fast, rated bad", "powerful", calls=[escalated("r3", "fast")]),
        answered("r4", "middling on powerful", "powerful"),
        answered("r5", "failed", "fast", status=502),
        answered("r6", "no outcome", "fast"),
        answered("r7", "asked the group directly", model="small"),
        answered("r8", "another key", "fast", key="k2"),
    ]
    path = await fill(obs, events, {"r1": 5, "r3": 1, "r4": 3, "r5": 5, "r7": 2, "r8": 5})
    names, keep = config_names(obs.config)
    assert names == {"small": "fast", "medium": "balanced", "large": "powerful"} and keep is None
    rows = read_ledger(path, names=names, key="k1", min_prompts=1, min_per_model=1)
    assert rows.models == ["fast", "powerful"]
    got = {
        text.split("\n")[1]: [None if math.isnan(v) else v for v in q]
        for text, q in zip(rows.prompts, rows.quality.tolist(), strict=True)
    }
    assert got == {
        "rated good on fast": [1.0, None],
        "accepted on fast": [1.0, None],
        "escalated from fast, rated bad": [0.0, 0.0],  # the verdict on fast, the rating of powerful
        "middling on powerful": [None, 0.5],
        "asked the group directly": [0.25, None],  # the group is the fast tier's model
    }
    assert rows.prompts[0].startswith("be brief\n")  # the text the router reads: system and user turns
    assert (rows.ratings, rows.verdicts) == (4, 2)
    assert rows.cost.shape == (2,) and (rows.cost > 0).all()
    # the other key's request counts only when no key is asked for
    everyone = read_ledger(path, names=names, min_prompts=1, min_per_model=1)
    assert len(everyone.prompts) == len(rows.prompts) + 1


async def test_a_router_keeps_its_own_candidates(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    events = [answered(f"r{i}", f"question {i}", "fast" if i % 2 else "powerful") for i in range(6)]
    path = await fill(obs, events, {f"r{i}": 5 for i in range(6)})
    names, keep = config_names(obs.config, "auto")
    assert keep == ["fast", "balanced", "powerful"]
    rows = read_ledger(path, names=names, models=["fast", "powerful"], min_prompts=1, min_per_model=1)
    assert rows.models == ["fast", "powerful"] and len(rows.prompts) == 6
    with pytest.raises(LedgerError, match="no such router"):
        config_names(obs.config, "nope")
    kept = read_ledger(path, names=names, models=keep, min_prompts=1, min_per_model=1)
    assert kept.models == ["fast", "powerful"] and kept.dropped == {"balanced": 0}  # never observed
    with pytest.raises(LedgerError, match=r"too few outcomes .* fast: 3, powerful: 3"):
        read_ledger(path, names=names, models=keep, min_prompts=1, min_per_model=4)


async def test_without_the_prompt_log_the_fit_refuses(tmp_path: Path, capsys: Any) -> None:
    obs = observer(tmp_path, log_prompts=False)
    path = await fill(obs, [answered(f"r{i}", f"q {i}", "fast") for i in range(30)], {"r1": 5})
    with pytest.raises(LedgerError, match="log_prompts: true"):
        read_ledger(path)
    code = fit_main(["--ledger", path, "-o", str(tmp_path / "r.npz"), "--featurizer", "hash"])
    assert code == 2
    assert "no prompt log" in capsys.readouterr().out
    assert not (tmp_path / "r.npz").exists()


async def test_too_few_outcomes_are_refused_with_the_counts(tmp_path: Path, capsys: Any) -> None:
    obs = observer(tmp_path)
    events = [answered(f"r{i}", f"q {i}", "fast" if i % 2 else "powerful") for i in range(12)]
    path = await fill(obs, events, {f"r{i}": 4 for i in range(12)})
    code = fit_main(["--ledger", path, "-o", str(tmp_path / "r.npz"), "--featurizer", "hash"])
    assert code == 2
    out = capsys.readouterr().out
    assert "12 prompts with an outcome; need at least 20" in out and "12 ratings" in out
    code = fit_main(
        ["--ledger", path, "-o", str(tmp_path / "r.npz"), "--featurizer", "hash", "--min-rows", "10"]
    )
    assert code == 0 and (tmp_path / "r.npz").exists()


async def test_a_missing_ledger_is_refused(tmp_path: Path, capsys: Any) -> None:
    code = fit_main(["--ledger", str(tmp_path / "none.db"), "-o", str(tmp_path / "r.npz")])
    assert code == 2 and "cannot open the ledger" in capsys.readouterr().out
