"""``thrifty route eval``: fit on train files, report on test files, optionally plot and write markdown."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from . import pairs, routerbench
from .report import markdown

PAIRS = ("mmlu", "gsm8k", "mt_bench")


def default_data() -> Path:
    for candidate in (
        os.environ.get("THRIFTY_ROUTING_DATA"),
        "../shared/data/routing",
        "/work/shared/data/routing",
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return Path("../shared/data/routing")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty route eval", description=__doc__)
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        action="append",
        help="folder with routerbench/ and routellm/; or, with --router, test files of your own",
    )
    p.add_argument(
        "--router",
        type=Path,
        default=None,
        help="a router from `thrifty route fit`: evaluate it on the --data file",
    )
    p.add_argument(
        "--format",
        choices=("routerbench", "jsonl"),
        default=None,
        help="with --router: the test file's layout (default: from the suffix)",
    )
    p.add_argument(
        "--only",
        choices=("routerbench", *PAIRS),
        action="append",
        help="run only these parts (repeatable); default all",
    )
    p.add_argument(
        "--featurizer",
        choices=("hash", "minilm", "minilm+hash"),
        default="hash",
        help="prompt vectors for the learned router (minilm needs thrifty.embeddings)",
    )
    p.add_argument(
        "--cache", type=Path, default=Path("benchmarks/out"), help="where prompt vectors are cached"
    )
    p.add_argument("--plots", type=Path, default=None, help="folder for PNG plots")
    p.add_argument("--markdown", type=Path, default=None, help="write the results as markdown here")
    p.add_argument(
        "--save-router",
        type=Path,
        default=None,
        help="also fit the learned router on the RouterBench train split and save it (.npz)",
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.router is not None or any(d.is_file() for d in args.data or ()):
        if args.router is None or not args.data:
            print("thrifty route eval: a test file needs --router (and a router needs --data FILE)")
            return 2
        from .owndata import eval_file_main

        return eval_file_main(args)
    data = args.data[0] if args.data else default_data()
    parts = args.only or ["routerbench", *PAIRS]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    bench = None
    pair_results = []
    if "routerbench" in parts:
        start = time.perf_counter()
        bench = routerbench.run(data, args.featurizer, args.cache)
        timings["routerbench"] = time.perf_counter() - start
        results["routerbench"] = bench.summary()
    for name in PAIRS:
        if name in parts:
            start = time.perf_counter()
            result = pairs.run(data, name, args.featurizer, args.cache)
            timings[name] = time.perf_counter() - start
            pair_results.append(result)
            results[name] = result.summary()
    text = markdown(results, bench.notes if bench else {}, timings, args.featurizer)
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
    if args.plots:
        from .plots import plot_pairs, plot_routerbench

        if bench is not None:
            plot_routerbench(bench, args.plots / "routing_routerbench.png")
        if pair_results:
            plot_pairs(pair_results, args.plots / "routing_routellm.png")
    if args.save_router:
        _save_router(data, args.featurizer, args.cache, args.save_router)
    return 0


def _save_router(data: Path, featurizer: str, cache: Path | None, path: Path) -> None:
    from ..learned import fit
    from .data import load_routerbench
    from .vectors_cache import prompt_vectors

    train = load_routerbench(data, "train")
    vectors = prompt_vectors(train.prompts, featurizer, cache)
    fit(vectors, train.quality, train.models, costs=train.cost, featurizer_name=featurizer).save(path)
    print(f"saved fitted router ({len(train.models)} models) to {path}")
