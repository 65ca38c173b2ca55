"""A small `thrifty bench run` on the embedded model, end to end and offline."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from thrifty.bench.cli import bench_main

CONFIG = """
models:
  - name: smollm2
    deployments: [{provider: local, model: smollm2, options: {n_threads: 1}}]
"""


@pytest.mark.model
def test_a_small_run_on_the_embedded_model(tmp_path: Path) -> None:
    config = tmp_path / "thrifty.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"
    args = ["run", "--config", str(config), "--models", "smollm2", "--domains", "maze,sorting"]
    args += [
        "--types",
        "solving",
        "--n",
        "1",
        "--max-tokens",
        "8",
        "--sweep",
        "1,2",
        "--sweep-n",
        "2",
        "-o",
        str(out),
    ]
    err = io.StringIO()
    assert bench_main(args, progress=err) == 0, err.getvalue()
    with (out / "results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["task"] for r in rows) == ["maze/solving/0", "sorting/solving/0"]
    for r in rows:
        assert r["error"] == "" and int(r["tokens_in"]) > 20 and 0 < int(r["tokens_out"]) <= 8
        assert float(r["latency_s"]) > 0 and float(r["cost"]) == 0.0  # local: free, but counted
        assert r["deployment"].endswith("local/smollm2")
    md = (out / "report.md").read_text()
    assert "| smollm2 | maze | solving | 1 |" in md and "## Concurrency (smollm2" in md
