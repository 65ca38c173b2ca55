"""``thrifty bench run --models smollm2,gemma -o results/``: compare models, providers and routers.

Requests go to an in-process gateway (``--config``, or by default the two
embedded models ``smollm2`` and ``gemma`` with the routers ``thrifty/auto``
and ``thrifty/cascade`` over them), to a running gateway (``--url``), or, from
Python, to any backend. ``--ray ADDRESS`` runs them on a Ray cluster. Run the
same command again after a crash or a kill to resume; ``thrifty bench report
DIR`` rewrites the reports from a run's state. Exit status: 0 done, 2 refused
or misconfigured.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..errors import ThriftyError
from .task import DOMAINS, TYPES, BenchTask

if TYPE_CHECKING:
    from ..backend import Backend
    from ..config import Config
    from ..tasks.batch_store import BatchStore
    from .runner import EngineFor, RunSpec

DEFAULT_VALUE = 0.01  # USD one correct answer is worth, for ROI


def bench_config() -> Config:
    """The default: both embedded models, and a rules router and a cascade over them."""
    from ..config import parse_config

    local = {"n_threads": 1}
    return parse_config(
        {
            "models": [
                {
                    "name": "smollm2",
                    "deployments": [{"provider": "local", "model": "smollm2", "options": local}],
                },
                {
                    "name": "gemma",
                    "deployments": [{"provider": "local", "model": "gemma3-270m", "options": local}],
                },
            ],
            "routing": {
                "default": "balanced",
                "tiers": [{"name": "fast", "model": "smollm2"}, {"name": "balanced", "model": "gemma"}],
                "routers": [
                    {"name": "thrifty/auto", "policy": "rules"},
                    {
                        "name": "thrifty/cascade",
                        "policy": "cascade",
                        "accept": {"fast": 0.6},
                        "max_escalations": 1,
                    },
                ],
            },
        },
        source="<thrifty bench default>",
    )


def _names(text: str | None, allowed: tuple[str, ...] | None = None, what: str = "") -> tuple[str, ...]:
    names = tuple(x.strip() for x in (text or "").split(",") if x.strip())
    if allowed is not None:
        for name in names:
            if name not in allowed:
                raise ThriftyError(f"unknown {what} {name!r}; expected some of {', '.join(allowed)}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thrifty bench", description="Compare models, providers and routers."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) a benchmark")
    run.add_argument("--models", required=True, help="comma-separated model names, e.g. smollm2,gemma")
    run.add_argument("--routers", help="comma-separated routed model names, e.g. thrifty/auto")
    run.add_argument("--domains", help=f"some of {','.join(DOMAINS)} (default: all)")
    run.add_argument("--types", help=f"some of {','.join(TYPES)} (default: all)")
    run.add_argument("--n", type=int, default=20, help="tasks per domain and type (default 20)")
    run.add_argument("--seed", type=int, default=7, help="task generator seed (default 7)")
    run.add_argument("--concurrency", type=int, default=4, help="requests in flight at once (default 4)")
    run.add_argument("--per-model", type=int, help="at most this many requests of one model in flight")
    run.add_argument("--max-tokens", type=int, default=128, help="completion token cap per request")
    run.add_argument(
        "--timeout", type=float, help="seconds per request from submission, queueing included (default: none)"
    )
    run.add_argument("--retries", type=int, default=1, help="retries per request for retryable errors")
    run.add_argument("-o", "--output", required=True, help="folder for the state, CSV, markdown and PNG")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running thrifty gateway (or any OpenAI-compatible server)")
    target.add_argument("--config", "-c", help="thrifty.yaml for an in-process gateway")
    run.add_argument("--api-key", help="key for --url (default: $THRIFTY_API_KEY)")
    run.add_argument("--ray", metavar="ADDRESS", help="run on this Ray cluster (needs `pip install ray`)")
    run.add_argument(
        "--sweep", default="1,2,4,8,16", help="worker counts of the concurrency table ('' for none)"
    )
    run.add_argument("--sweep-model", help="model of the concurrency table (default: the first)")
    run.add_argument("--sweep-n", type=int, default=16, help="tasks per concurrency level (default 16)")
    run.add_argument("--data", help="the shared routing data folder (general/analysis questions)")
    run.add_argument(
        "--price", action="append", default=[], metavar="MODEL=IN,OUT",
        help="price a model group at these USD per 1M tokens (e.g. to compare local models as if paid)",
    )  # fmt: skip
    run.add_argument(
        "--value", type=float, default=DEFAULT_VALUE, help="USD one correct answer is worth (ROI)"
    )
    run.add_argument("--no-plot", action="store_true", help="no PNG")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    report = sub.add_parser("report", help="write the reports again from a run's state")
    report.add_argument("output", help="the run's output folder")
    report.add_argument("--no-plot", action="store_true")
    report.add_argument("--regrade", action="store_true", help="grade the stored answers again first")
    return parser


def bench_main(argv: list[str], *, backend: Backend | None = None, progress: TextIO | None = None) -> int:
    """The ``thrifty bench`` command; ``backend`` replaces --url/--config (for Python callers)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "report":
            return _report_again(Path(args.output), plot=not args.no_plot, regrade=args.regrade)
        spec = _spec(args)
        from .runner import plan

        plan(spec)  # a generator that cannot run (missing data) says so before any model loads
        sink = None if args.quiet else (progress or sys.stderr)
        store = asyncio.run(_run(args, spec, backend, sink))
        try:
            paths = _write(store, spec, Path(args.output), _header(args), plot=not args.no_plot)
        finally:
            store.close()
    except ThriftyError as exc:
        print(f"thrifty bench: error: {exc.message}", file=sys.stderr)
        return 2
    print(f"thrifty bench: reports in {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _spec(args: argparse.Namespace) -> RunSpec:
    from .runner import RunSpec

    models = _names(args.models) + _names(args.routers)
    if not models:
        raise ThriftyError("--models must name at least one model")
    if len(set(models)) != len(models):
        raise ThriftyError("a model is named twice in --models/--routers")
    for flag, value in (
        ("--n", args.n),
        ("--concurrency", args.concurrency),
        ("--max-tokens", args.max_tokens),
    ):
        if value < 1:
            raise ThriftyError(f"{flag} must be at least 1, got {value}")
    try:
        levels = tuple(int(x) for x in _names(args.sweep))
    except ValueError:
        raise ThriftyError(f"--sweep must be comma-separated worker counts, got {args.sweep!r}") from None
    if any(w < 1 for w in levels):
        raise ThriftyError("--sweep worker counts must be at least 1")
    return RunSpec(
        models=models,
        domains=_names(args.domains, DOMAINS, "domain") or DOMAINS,
        types=_names(args.types, TYPES, "task type") or TYPES,
        n=args.n,
        seed=args.seed,
        max_tokens=args.max_tokens,
        concurrency=args.concurrency,
        per_model=args.per_model,
        retries=args.retries,
        timeout=args.timeout,
        sweep_levels=levels,
        sweep_model=args.sweep_model,
        sweep_n=args.sweep_n,
        data=args.data,
        prices=dict(_price(p) for p in args.price),
        value=args.value,
    )


def _price(text: str) -> tuple[str, tuple[float, float]]:
    name, _, rates = text.partition("=")
    try:
        per_in, per_out = (float(x) for x in rates.split(","))
    except ValueError:
        raise ThriftyError(f"--price must look like MODEL=IN,OUT (USD per 1M tokens), got {text!r}") from None
    if not name or per_in < 0 or per_out < 0:
        raise ThriftyError(f"--price must look like MODEL=IN,OUT (USD per 1M tokens), got {text!r}")
    return name, (per_in, per_out)


async def _run(
    args: argparse.Namespace, spec: RunSpec, backend: Backend | None, sink: TextIO | None
) -> BatchStore:
    from . import runner

    out = Path(args.output)
    kw: dict[str, Any] = {"progress": sink, "sweep": bool(spec.sweep_levels)}
    if backend is not None:
        return await runner.run_with_backend(spec, out, backend, **kw)
    config = None
    if not args.url:
        from ..config import load_config

        config = load_config(args.config) if args.config else bench_config()
        from ..prices import PriceTable

        kw["price_table"] = PriceTable(config)
    if args.ray:
        return await runner.run(spec, out, _ray_engine(args, config), **kw)
    target = _backend(args, config)
    return await runner.run_with_backend(spec, out, target, **kw)


def _backend(args: argparse.Namespace, config: Config | None) -> Backend:
    if args.url:
        from ..providers.openai import remote_backend

        return remote_backend(args.url, args.api_key or os.environ.get("THRIFTY_API_KEY"))
    from ..gateway import Gateway

    return Gateway(config, observe=False)


def _ray_engine(args: argparse.Namespace, config: Config | None) -> EngineFor:
    from ..gateway import Gateway
    from .runner import ray_engine_for

    if args.url:
        from ..providers.openai import remote_backend

        factory: Any = functools.partial(
            remote_backend, args.url, args.api_key or os.environ.get("THRIFTY_API_KEY")
        )
    else:
        factory = functools.partial(Gateway, config, observe=False)
    return ray_engine_for(args.ray, factory)


def _header(args: argparse.Namespace) -> list[str]:
    target = args.url or args.config or "in-process gateway, embedded models (thrifty bench default config)"
    return [
        f"- date: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        f"- command: `thrifty bench {shlex.join(sys.argv[2:] if sys.argv[1:2] == ['bench'] else [])}`".replace(
            "`thrifty bench `", "`thrifty bench` (from Python)"
        ),
        f"- target: {target}",
    ]


def _write(store: BatchStore, spec: RunSpec, out: Path, header: list[str], *, plot: bool) -> list[Path]:
    from . import report, runner

    rows = runner.results(store, runner.MATRIX)
    sweep = runner.sweep_results(store, spec.sweep_levels)
    return report.write_reports(
        out, rows, spec.models, sweep, value=spec.value, header=header, sweep_model=spec.swept, plot=plot
    )


def _report_again(out: Path, *, plot: bool, regrade: bool = False) -> int:
    from ..tasks.batch_store import BatchStore
    from .runner import MATRIX, RunSpec

    path = out / "state.db"
    if not path.is_file():
        raise ThriftyError(f"no benchmark state in {out} (expected {path})")
    store = BatchStore(str(path))
    try:
        data = store.batch(MATRIX)
        if data is None:
            raise ThriftyError(f"{path} holds no benchmark run")
        raw = dict(data["spec"])
        raw["prices"] = {k: tuple(v) for k, v in raw.get("prices", {}).items()}
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        spec = RunSpec(**fields)
        if regrade:
            from . import runner

            tasks = {t["id"]: BenchTask.from_json(t) for t in data["tasks"]}
            for batch in [MATRIX, *(str(b["id"]) for b in store.batches(limit=10_000) if b["id"] != MATRIX)]:
                changed = asyncio.run(runner.regrade(store, batch, tasks))
                print(f"thrifty bench: {batch}: {changed} verdicts changed", file=sys.stderr)
        paths = _write(store, spec, out, [f"- rewritten from {path}"], plot=plot)
    finally:
        store.close()
    print(f"thrifty bench: reports in {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0
