from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from thrifty.backend import Backend
from thrifty.routing import Router, build_routers, explain
from thrifty.routing.learned import Recipe, choose, fit, load
from thrifty.routing.vectors import HashingFeaturizer
from thrifty.testing import FakeBackend, chat

from .conftest import make_config

MATH = [f"Compute the integral of x^{i} times sin(x) and prove the identity step {i}" for i in range(30)]
CHIT = [f"Say hello to my friend number {i} in a cheerful way" for i in range(30)]


def fitted(tmp_path: Path) -> Path:
    """A router that learned: the fast tier fails maths, everyone handles small talk."""
    texts = MATH + CHIT
    outcomes = np.array([[0.0, 1.0, 1.0]] * 30 + [[1.0, 1.0, 1.0]] * 30, dtype=np.float32)
    vectors = HashingFeaturizer(512).transform(texts)
    model = fit(vectors, outcomes, ["fast", "balanced", "powerful"], featurizer_name="hash", k=5)
    path = tmp_path / "router.npz"
    model.save(path)
    return path


def test_fitted_router_round_trips_through_a_file(tmp_path: Path) -> None:
    path = fitted(tmp_path)
    model = load(path)
    quality = model.predict_texts(["Compute the integral of x^7 times sin(x)", "Say hello to my friend"])
    assert quality[0, 0] < 0.5 < quality[0, 1]
    assert quality[1, 0] > 0.7


def test_choose_cheapest_clearing_target_or_best_tradeoff() -> None:
    quality, costs = [0.4, 0.75, 0.9], [1.0, 5.0, 50.0]
    assert choose(quality, costs, quality_target=0.7) == 1
    assert choose(quality, costs, quality_target=0.95) == 2  # none clears: the best
    assert choose(quality, costs, cost_weight=0.0) == 2
    assert choose(quality, costs, cost_weight=10.0) == 0


async def test_learned_router_in_the_gateway(tiers: list[dict[str, Any]], tmp_path: Path) -> None:
    path = fitted(tmp_path)
    backends = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}
    groups: dict[str, Backend] = dict(backends)
    spec = {"name": "thrifty/learned", "policy": "learned", "model_file": str(path), "quality_target": 0.7}
    config = make_config({"tiers": tiers, "routers": [spec]})
    router = build_routers(config, groups)["thrifty/learned"]
    assert isinstance(router, Router)
    maths, talk = chat("Compute the integral of x^3 times sin(x)"), chat("Say hello to my friend Bob")
    assert (await router.complete(maths)).text == "from medium"
    assert (await router.complete(talk)).text == "from small"
    assert maths.trace.annotations["route"].startswith("policy=learned model=balanced score=")
    assert explain("Say hello to my friend", config)["routers"]["thrifty/learned"]["tier"] == "fast"


async def test_fitted_file_without_the_tier_falls_back(tiers: list[dict[str, Any]], tmp_path: Path) -> None:
    model = fit(HashingFeaturizer(64).transform(["a", "b"]), np.ones((2, 2), np.float32), ["x", "y"])
    model.save(tmp_path / "other.npz")
    groups: dict[str, Backend] = {n: FakeBackend(n, name=n) for n in ("small", "medium", "large")}
    spec = {"name": "r", "policy": "learned", "model_file": str(tmp_path / "other.npz")}
    router = build_routers(make_config({"tiers": tiers, "routers": [spec]}), groups)["r"]
    request = chat("hi")
    await router.complete(request)
    assert "no entry for tier 'fast'" in request.trace.annotations["route-fallback"]


def test_a_file_that_is_not_a_router_is_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", meta=np.array('{"format": "other"}'))
    with pytest.raises(ValueError, match="not a thrifty router file"):
        load(tmp_path / "x.npz")


def test_recipe_with_logistic_and_cluster_prior_survives_the_file(tmp_path: Path) -> None:
    texts = MATH + CHIT
    outcomes = np.array([[0.0, 1.0]] * 30 + [[1.0, 1.0]] * 30, dtype=np.float32)
    vectors = HashingFeaturizer(256).transform(texts)
    recipe = Recipe(k=10, power=1.0, linear="logistic", l2=1.0, clusters=2, shares=(1.0, 1.0, 1.0))
    model = fit(vectors, outcomes, ["fast", "powerful"], featurizer_name="hash", recipe=recipe)
    model.save(tmp_path / "r.npz")
    loaded = load(tmp_path / "r.npz")
    assert loaded.recipe == recipe and loaded.centroids is not None
    np.testing.assert_allclose(loaded.predict(vectors), model.predict(vectors), atol=2e-3)
    quality = loaded.predict_texts(["Compute the integral of x^7 times sin(x)", "Say hello to my friend"])
    assert quality[0, 0] < 0.5 < quality[1, 0]


def test_files_from_the_first_format_still_load(tmp_path: Path) -> None:
    vectors = HashingFeaturizer(64).transform(["a b", "c d"])
    np.savez(
        tmp_path / "v1.npz",
        meta=np.array(
            json.dumps({"format": "thrifty-router/1", "featurizer": "hash", "dim": 64, "k": 3, "blend": 0.25})
        ),
        models=np.array(["x"]),
        vectors=vectors,
        outcomes=np.ones((2, 1), np.float32),
        weights=np.zeros((65, 1), np.float32),
        mean_cost=np.zeros(1, np.float32),
    )
    model = load(tmp_path / "v1.npz")
    assert model.recipe == Recipe(k=3, shares=(0.25, 0.75, 0.0))


async def test_embedder_failure_at_run_time_falls_back(tiers: list[dict[str, Any]], tmp_path: Path) -> None:
    vectors = np.eye(3, 384, dtype=np.float32)
    model = fit(
        vectors, np.ones((3, 3), np.float32), ["fast", "balanced", "powerful"], featurizer_name="minilm"
    )
    model.save(tmp_path / "minilm.npz")

    def broken(texts: Sequence[str]) -> None:
        raise RuntimeError("embedding model not installed")

    groups: dict[str, Backend] = {n: FakeBackend(f"from {n}", name=n) for n in ("small", "medium", "large")}
    spec = {"name": "r", "policy": "learned", "model_file": str(tmp_path / "minilm.npz")}
    config = make_config({"tiers": tiers, "routers": [spec], "default": "balanced"})
    router = build_routers(config, groups, embed=broken)["r"]
    request = chat("hi")
    assert (await router.complete(request)).text == "from medium"
    assert "embedding model not installed" in request.trace.annotations["route-fallback"]
