"""Offline routing evaluation: every policy against single models, random, rules and oracle.

    .venv/bin/python benchmarks/routing_eval.py                 # RouterBench slice (~2 min once cached)
    .venv/bin/python benchmarks/routing_eval.py --routellm      # GSM8K, MT Bench, MMLU pairs

Prompt vectors default to MiniLM (``--featurizer hash`` for the old ones);
the previous hash-vector router is always run beside it. The first run embeds
every prompt once (~4 min for RouterBench, ~15 min for MMLU on 2 busy cores).

Fits on the train files, reports on the test files (RouteLLM pairs: k-fold
cross-fitting, see docs/bench/routing.md). Prompt vectors are cached under
benchmarks/out/; plots go to docs/img/routing_*.png; the markdown tables are
printed and saved to benchmarks/out/routing_<part>.md.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    from thrifty.routing import eval_main

    routellm = "--routellm" in sys.argv[1:]
    rest = [a for a in sys.argv[1:] if a != "--routellm"]
    if "--featurizer" not in rest:
        rest += ["--featurizer", "minilm"]
    part = "routellm" if routellm else "routerbench"
    only = (
        ["--only", "gsm8k", "--only", "mt_bench", "--only", "mmlu"] if routellm else ["--only", "routerbench"]
    )
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"command: .venv/bin/python benchmarks/routing_eval.py {' '.join(sys.argv[1:])}".rstrip())
    start = time.perf_counter()
    code = eval_main(
        [
            *only,
            "--cache",
            str(ROOT / "benchmarks" / "out"),
            "--plots",
            str(ROOT / "docs" / "img"),
            "--markdown",
            str(ROOT / "benchmarks" / "out" / f"routing_{part}.md"),
            *rest,
        ]
    )
    print(f"total wall time: {time.perf_counter() - start:.0f}s")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
