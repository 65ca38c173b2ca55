"""`thrifty route eval`: its metrics on hand-checked inputs, its loaders and runs on a slice of the real data.

The slice (the first rows of each RouterBench and RouteLLM file in ../shared/data/routing,
see its README) keeps the run to seconds; the numbers it gives are not the published ones,
only their shape and invariants (the oracle beats every model, PGR runs from 0 to 1).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from thrifty.routing.evaluation import cli, metrics, pairs, routerbench
from thrifty.routing.evaluation.data import ROUTERBENCH_TASKS, load_pair, load_routerbench

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "routing"
if not DATA.is_dir():
    DATA = Path("/work/shared/data/routing")
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason="the shared routing data is not beside the checkout"
)


# -- metrics, by hand ------------------------------------------------------------------------


def test_hull_keeps_the_upper_left_frontier() -> None:
    points = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.9), (2.0, 0.55), (4.0, 0.8), (1.0, 0.4)]
    # (2, 0.6) lies under the line from (1, 0.5) to (3, 0.9); (4, 0.8) is dearer and worse
    assert metrics.hull(points) == [(1.0, 0.5), (3.0, 0.9)]


def test_accuracy_cost_and_aiq_follow_the_hull() -> None:
    points = [(1.0, 0.5), (3.0, 0.9)]
    assert metrics.accuracy_at(metrics.hull(points), 2.0) == pytest.approx(0.7)
    assert metrics.accuracy_at(metrics.hull(points), 0.5) == 0.5  # flat beyond the ends
    assert metrics.cost_to_reach(points, 0.8) == pytest.approx(2.5)
    assert metrics.cost_to_reach(points, 0.95) is None
    assert metrics.aiq(points, 1.0, 3.0) == pytest.approx(0.7)  # the mean of a straight line


def test_pgr_apgr_and_cpt_of_a_perfect_and_a_useless_router() -> None:
    import numpy as np

    weak = np.array([1.0, 0.0, 1.0, 0.0])
    strong = np.array([1.0, 1.0, 1.0, 1.0])  # the strong model helps on prompts 1 and 3 only
    perfect = metrics.pgr_curve(np.array([0.0, 1.0, 0.0, 1.0]), weak, strong, steps=4)
    assert perfect == [(0.0, 0.0), (0.25, 0.5), (0.5, 1.0), (0.75, 1.0), (1.0, 1.0)]
    assert metrics.cpt(perfect, 0.5) == 0.25 and metrics.cpt(perfect, 0.8) == pytest.approx(0.4)
    assert metrics.apgr(perfect) == pytest.approx(0.25 * (0.25 + 0.75 + 1.0 + 1.0))
    backwards = metrics.pgr_curve(np.array([1.0, 0.0, 1.0, 0.0]), weak, strong, steps=4)
    assert metrics.cpt(backwards, 0.5) == pytest.approx(0.75) and metrics.apgr(backwards) < metrics.apgr(
        perfect
    )


# -- the loaders and the runs, on a slice of the real data -------------------------------------


def _head(src: Path, dst: Path, rows: int) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    csv.field_size_limit(1 << 30)
    with open(src, newline="", encoding="utf-8") as fin, open(dst, "w", newline="", encoding="utf-8") as fout:
        reader, writer = csv.reader(fin), csv.writer(fout)
        for i, row in enumerate(reader):
            if i > rows:
                break
            writer.writerow(row)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not DATA.is_dir():
        pytest.skip("the shared routing data is not beside the checkout")
    root = tmp_path_factory.mktemp("routing")
    for task in ROUTERBENCH_TASKS:
        _head(DATA / "routerbench" / f"{task}_train.csv", root / "routerbench" / f"{task}_train.csv", 60)
        _head(DATA / "routerbench" / f"{task}_test.csv", root / "routerbench" / f"{task}_test.csv", 40)
    gsm8k = DATA / "routellm" / "gsm8k"
    _head(gsm8k / "gsm8k_responses.csv", root / "routellm" / "gsm8k" / "gsm8k_responses.csv", 80)
    shutil.copy(gsm8k / "contaminated_prompts.jsonl", root / "routellm" / "gsm8k")
    for subject in ("mmlu_anatomy.csv", "mmlu_astronomy.csv", "mmlu_business_ethics.csv"):
        _head(DATA / "routellm" / "mmlu" / subject, root / "routellm" / "mmlu" / subject, 30)
    shutil.copytree(DATA / "routellm" / "mt_bench", root / "routellm" / "mt_bench")
    return root


@needs_data
def test_routerbench_loads_eleven_models_with_quality_and_cost(data: Path) -> None:
    table = load_routerbench(data, "test")
    assert len(table.models) == 11 and "gpt-4-1106-preview" in table.models
    assert len(table.prompts) + table.skipped == 3 * 40
    assert table.quality.shape == table.cost.shape == (len(table.prompts), 11)
    assert ((table.quality >= 0) & (table.quality <= 1)).all() and (table.cost >= 0).all()
    assert set(table.groups) == set(ROUTERBENCH_TASKS)
    assert not any(p.startswith("['") for p in table.prompts)  # turn lists became text


@needs_data
@pytest.mark.parametrize("name", ["gsm8k", "mmlu", "mt_bench"])
def test_routellm_pairs_load_as_weak_and_strong(data: Path, name: str) -> None:
    table = load_pair(data, name)
    assert table.models == ["weak", "strong"] and len(table.prompts) > 20
    assert table.quality.shape == (len(table.prompts), 2)
    assert (table.cost == [0.0, 1.0]).all()
    if name == "mmlu":
        assert set(table.groups) == {"anatomy", "astronomy", "business_ethics"}


@needs_data
def test_routerbench_run_puts_the_oracle_above_every_model(data: Path) -> None:
    result = routerbench.run(data, "hash", None)
    summary = result.summary()
    best = summary["best_accuracy"]
    assert result.oracle[1] >= best and result.oracle[1] >= max(a for _, a in result.singles.values())
    rows = summary["rows"]
    assert rows["oracle"]["max_accuracy"] >= best
    assert {"rules", "cascade", "random mix"} <= set(rows)
    assert all(0.0 <= row["aiq"] <= 1.0 for row in rows.values())
    assert result.notes["n_test"] + result.notes["skipped_test"] == 3 * 40


@needs_data
def test_pair_run_curves_go_from_no_gain_to_all_of_it(data: Path) -> None:
    result = pairs.run(data, "gsm8k", "hash", None)
    assert {"random", "rules", "oracle"} <= set(result.curves)
    for curve in result.curves.values():
        assert curve[0] == (0.0, 0.0) and curve[-1][0] == 1.0 and curve[-1][1] == pytest.approx(1.0)
    rows = result.summary()["rows"]
    assert rows["oracle"]["apgr"] >= max(r["apgr"] for r in rows.values()) - 1e-9


@needs_data
def test_cli_writes_markdown_and_a_router_the_gateway_can_load(data: Path, tmp_path: Path) -> None:
    from thrifty.routing.learned import load

    out, router = tmp_path / "eval.md", tmp_path / "router.npz"
    argv = [
        "--data",
        str(data),
        "--only",
        "mt_bench",
        "--cache",
        str(tmp_path / "vectors"),
        "--markdown",
        str(out),
        "--save-router",
        str(router),
    ]
    assert cli.main(argv) == 0
    text = out.read_text(encoding="utf-8")
    assert "mt_bench" in text.lower().replace(" ", "_") and "APGR" in text
    model = load(router)
    assert len(model.models) == 11
    assert list((tmp_path / "vectors").glob("routing-hash-*.npy"))  # vectors cached for the next run
