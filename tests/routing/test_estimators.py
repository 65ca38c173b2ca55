"""The numpy estimators behind the learned router, on data whose answer is known."""

from __future__ import annotations

import numpy as np

from thrifty.routing import estimators as E


def two_groups(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Prompts near two directions; model 0 only handles the first group, model 1 both."""
    rng = np.random.default_rng(1)
    centres = np.eye(8)[:2]
    labels = np.arange(n) % 2
    x = centres[labels] + 0.1 * rng.standard_normal((n, 8))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.stack([(labels == 0).astype(float), np.ones(n)], axis=1)
    return x, y


def test_logistic_regression_separates_what_a_model_gets_right() -> None:
    x, y = two_groups()
    p = E.linear_predict(x, E.logistic(x, y, l2=0.1), "logistic")
    assert p[y[:, 0] == 1, 0].min() > 0.8 > 0.2 > p[y[:, 0] == 0, 0].max()
    assert p[:, 1].min() > 0.9  # always right stays near 1


def test_kmeans_finds_the_groups_and_cluster_means_follow_them() -> None:
    x, y = two_groups()
    centres = E.kmeans(x, 2)
    labels = E.assign(x, centres)
    assert len(set(labels[::2])) == 1 and len(set(labels[1::2])) == 1 and labels[0] != labels[1]
    means = E.cluster_means(labels, y, 2, shrink=0.0)
    assert sorted(means[:, 0].tolist()) == [0.0, 1.0]


def test_knn_reads_the_neighbours_outcomes() -> None:
    x, y = two_groups()
    p = E.knn(x[:2], x[2:], y[2:], k=10, shrink=0.0)
    assert p[0, 0] == 1.0 and p[1, 0] == 0.0


def test_roc_auc_counts_ties_as_half_and_needs_both_classes() -> None:
    assert E.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    assert E.roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert E.roc_auc([0.2, 0.3], [1, 1]) is None


def test_euclidean_knn_reads_a_learned_space() -> None:
    x, y = two_groups()
    projection = E.ridge(x, y, l2=0.1)[:-1]  # the space of predicted outcomes
    p = E.knn_euclidean(x[:2] @ projection, x[2:] @ projection, y[2:], k=10, shrink=0.0)
    assert p[0, 0] == 1.0 and p[1, 0] == 0.0 and (p[:, 1] == 1.0).all()


def test_stacker_trusts_the_informative_estimate_and_calibrates_it() -> None:
    rng = np.random.default_rng(3)
    signal = rng.standard_normal((4000, 2))
    y = (rng.random((4000, 2)) < 1 / (1 + np.exp(-2 * signal))).astype(float)
    squashed = 0.5 + 0.05 * np.tanh(signal)  # ranks right, badly calibrated
    noise = rng.random((4000, 2))
    w = E.stack_fit([squashed[:3000], noise[:3000]], y[:3000], l2=1.0)
    p = E.stack_predict([squashed[3000:], noise[3000:]], w)
    assert (np.abs(w[0]) > 10 * np.abs(w[1])).all()
    constant = E.log_loss(np.broadcast_to(y[:3000].mean(0), (1000, 2)), y[3000:])
    stacked = E.log_loss(p, y[3000:])
    assert stacked < constant - 0.1 and stacked < E.log_loss(squashed[3000:], y[3000:]) - 0.1


def test_knn_for_one_request_matches_the_batched_estimate() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((500, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (rng.random((500, 3)) < 0.6).astype(np.float32)
    batched = E.knn(x[:20], x, y, k=25)  # 20 rows: the BLAS product
    one_by_one = np.vstack([E.knn(x[i : i + 1], x, y, k=25) for i in range(20)])  # a request: numpy's loop
    np.testing.assert_allclose(one_by_one, batched, atol=1e-5)
