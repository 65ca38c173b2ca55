"""Per-request cost of the learned router's estimate, without the embedding.

    PYTHONPATH=src .venv/bin/python benchmarks/routing_predict_cost.py

Fits the default MiniLM recipe on the RouterBench train files (vectors cached in benchmarks/out by
routing_eval.py or routing_ablate.py) and times ``LearnedModel.predict`` on one prompt vector at a
time: the work a routing decision adds after the prompt is embedded. Prints the median and the
90th percentile over 500 calls, and the same for the prompt-shape features (``thrifty.routing.shape``).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.routing import shape  # noqa: E402
from thrifty.routing.evaluation.cli import default_data  # noqa: E402
from thrifty.routing.evaluation.owndata import load_files  # noqa: E402
from thrifty.routing.evaluation.vectors_cache import prompt_vectors  # noqa: E402
from thrifty.routing.learned import fit  # noqa: E402

TASKS = ("arc_challenge", "mbpp", "winograde")


def timed(call: Callable[[int], object], n: int = 500) -> str:
    took = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        took.append(time.perf_counter() - start)
    took.sort()
    return f"median {1e6 * statistics.median(took):.0f} µs, p90 {1e6 * took[int(0.9 * n)]:.0f} µs"


def main() -> None:
    root = default_data() / "routerbench"
    train = load_files([root / f"{t}_train.csv" for t in TASKS])
    test = load_files([root / f"{t}_test.csv" for t in TASKS])
    cache = ROOT / "benchmarks" / "out"
    model = fit(
        prompt_vectors(train.prompts, "minilm", cache),
        train.quality,
        train.models,
        costs=train.cost,
        featurizer_name="minilm",
    )
    queries = prompt_vectors(test.prompts, "minilm", cache)
    n = len(queries)
    print(
        f"LearnedModel.predict, one prompt ({len(model.vectors)} training prompts, {len(model.models)} models):",
        timed(lambda i: model.predict(queries[i % n : i % n + 1])),
    )
    print("shape.extract, one prompt:", timed(lambda i: shape.extract(test.prompts[i % n])))
    print("predictions (first 3 test prompts):", np.round(model.predict(queries[:3]), 4).tolist()[0][:4])


if __name__ == "__main__":
    main()
