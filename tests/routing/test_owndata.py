"""`thrifty route fit` / `thrifty route eval --router` on a small synthetic outcome file of our own."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from thrifty.backend import Backend
from thrifty.cli import route_main
from thrifty.routing import Router, build_routers
from thrifty.routing.evaluation import owndata
from thrifty.routing.learned import fit, load
from thrifty.routing.vectors import HashingFeaturizer
from thrifty.testing import FakeBackend, chat

from .conftest import make_config

MODELS = ("cheap", "mid", "dear")
COSTS = {"cheap": 0.001, "mid": 0.01, "dear": 0.1}


def rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Arithmetic that only the dear model gets right; greetings everyone gets right."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        hard = i % 2 == 0
        prompt = (
            f"Prove the bound on the integral number {rng.integers(1000)} step by step"
            if hard
            else f"Say hello to my neighbour {rng.integers(1000)} warmly"
        )
        row: dict[str, Any] = {"prompt": prompt}
        for m in MODELS:
            row[m] = 1.0 if (not hard or m == "dear") else 0.0
            row[f"{m}|total_cost"] = COSTS[m]
        out.append(row)
    return out


def write_csv(path: Path, data: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(data[0]))
        writer.writeheader()
        writer.writerows(data)
    return path


def write_jsonl(path: Path, data: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    return path


def test_fit_then_eval_on_a_file_of_our_own(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train = rows(80, 0)
    train[3]["mid"] = ""  # a missing value: skipped and counted
    write_csv(tmp_path / "train.csv", train)
    write_jsonl(tmp_path / "test.jsonl", rows(40, 1))
    router = tmp_path / "router.npz"
    assert (
        route_main(["fit", "--data", str(tmp_path / "train.csv"), "-o", str(router), "--featurizer", "hash"])
        == 0
    )
    assert "1 skipped" in capsys.readouterr().out
    model = load(router)
    assert model.models == MODELS and model.cost_weight is not None
    code = route_main(
        [
            "eval",
            "--data",
            str(tmp_path / "test.jsonl"),
            "--router",
            str(router),
            "--plots",
            str(tmp_path / "plots"),
            "--markdown",
            str(tmp_path / "r.md"),
        ]
    )
    assert code == 0
    report = (tmp_path / "r.md").read_text()
    assert "Best single model: **dear**" in report
    for row in (
        "single-model hull",
        "learned, λ rule (sweep)",
        "quality_target rule",
        "runtime default",
        "oracle",
    ):
        assert row in report
    assert (tmp_path / "plots" / "routing_test.png").stat().st_size > 1000


def test_the_router_learns_to_send_only_the_hard_half_to_the_dear_model(tmp_path: Path) -> None:
    model, _ = owndata.fit_file([write_csv(tmp_path / "t.csv", rows(80, 0))], None, "hash", 0.98, None)
    report = owndata.evaluate(model, owndata.load_file(write_jsonl(tmp_path / "x.jsonl", rows(40, 1))), None)
    cost, accuracy = report.policies[owndata.DEFAULT][0]
    assert accuracy == 1.0
    assert cost == pytest.approx((0.001 + 0.1) / 2)  # greetings go to the cheap model


def test_a_file_without_cost_columns_is_refused_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("prompt,cheap\nhello,1\n", encoding="utf-8")
    assert (
        route_main(["fit", "--data", str(path), "-o", str(tmp_path / "r.npz"), "--featurizer", "hash"]) == 2
    )
    assert "|total_cost" in capsys.readouterr().out


def test_eval_refuses_a_test_file_with_models_the_router_never_saw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, _ = owndata.fit_file([write_csv(tmp_path / "t.csv", rows(20, 0))], None, "hash", 0.98, None)
    model.save(tmp_path / "r.npz")
    other = [{**{k.replace("dear", "other"): v for k, v in r.items()}} for r in rows(10, 1)]
    code = route_main(
        ["eval", "--data", str(write_csv(tmp_path / "o.csv", other)), "--router", str(tmp_path / "r.npz")]
    )
    assert code == 2
    assert "not fitted on other" in capsys.readouterr().out


async def test_the_learned_policy_uses_the_files_cross_validated_cost_weight(
    tiers: list[dict[str, Any]], tmp_path: Path
) -> None:
    # every tier predicted equally good: any cost weight picks the cheapest, target 0.99 the best
    texts = ["Compute the integral", "Say hello"] * 10
    outcomes = np.tile([0.9, 0.95, 0.98], (20, 1)).astype(np.float32)
    model = fit(HashingFeaturizer(64).transform(texts), outcomes, ["fast", "balanced", "powerful"], k=5)
    model.cost_weight = 2.0
    model.save(tmp_path / "r.npz")
    groups: dict[str, Backend] = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}

    def router(**extra: Any) -> Router:
        spec = {"name": "r", "policy": "learned", "model_file": str(tmp_path / "r.npz"), **extra}
        built = build_routers(make_config({"tiers": tiers, "routers": [spec]}), groups)["r"]
        assert isinstance(built, Router)
        return built

    assert (await router().complete(chat("Compute the integral"))).text == "from small"
    assert (await router(quality_target=0.97).complete(chat("Compute the integral"))).text == "from large"
    assert (await router(cost_weight=0.0).complete(chat("Compute the integral"))).text == "from large"
