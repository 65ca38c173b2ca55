"""Fitting on sparse outcomes: NaN is "not observed", and each model learns from its own rows only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from thrifty.routing.learned import Recipe, fit, load


def data(n: int = 60, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (rng.random((n, 2)) < 0.5).astype(np.float64)
    return x, y


@pytest.mark.parametrize("linear", ["ridge", "logistic"])
def test_each_model_is_fitted_on_the_rows_where_it_was_observed(linear: str) -> None:
    x, y = data()
    sparse = y.copy()
    sparse[::2, 0] = np.nan  # model a seen on odd rows, model b on the first 40
    sparse[40:, 1] = np.nan
    recipe = Recipe(k=10, power=1.0, linear=linear, l2=1.0, clusters=0, shares=(0.5, 0.5, 0.0))
    model = fit(x, sparse, ["a", "b"], recipe=recipe)
    alone_a = fit(x[1::2], y[1::2, :1], ["a"], recipe=recipe)
    alone_b = fit(x[:40], y[:40, 1:], ["b"], recipe=recipe)
    query, _ = data(5, seed=1)
    predicted = model.predict(query)
    assert not np.isnan(predicted).any()
    np.testing.assert_allclose(predicted[:, 0], alone_a.predict(query)[:, 0], atol=1e-3)
    np.testing.assert_allclose(predicted[:, 1], alone_b.predict(query)[:, 0], atol=1e-3)


def test_sparse_outcomes_with_clusters_survive_a_save_and_load(tmp_path: Path) -> None:
    x, y = data()
    y[::3, 0] = np.nan
    y[1::3, 1] = np.nan
    model = fit(x, y, ["a", "b"], recipe=Recipe(k=10, clusters=3, shares=(1 / 3, 1 / 3, 1 / 3)))
    model.save(tmp_path / "r.npz")
    again = load(tmp_path / "r.npz")
    query, _ = data(4, seed=2)
    predicted = again.predict(query)
    assert not np.isnan(predicted).any() and ((predicted >= 0) & (predicted <= 1)).all()
    np.testing.assert_allclose(predicted, model.predict(query), atol=2e-3)  # float16 storage


def test_a_model_never_observed_is_refused() -> None:
    x, y = data()
    y[:, 1] = np.nan
    with pytest.raises(ValueError, match="no observed outcome for b"):
        fit(x, y, ["a", "b"])
