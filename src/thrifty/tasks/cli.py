"""``thrifty batch run input.jsonl -o output.jsonl``: an OpenAI-format batch, resumably.

Requests go to a running gateway (``--url``), to an in-process gateway built
from a config file (``--config``), or, from Python, to any backend object.
With ``--ray ADDRESS`` (or ``tasks.ray.address``) they run on a Ray cluster.
Progress goes to stderr. Exit status: 0 all succeeded, 1 some requests or
lines failed (see the error file), 2 the batch was refused or misconfigured.
Run the same command again after a crash or a kill to resume.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import sys
from dataclasses import replace
from typing import TYPE_CHECKING, TextIO

from ..backend import Backend
from ..errors import ThriftyError
from .batch_job import BackendFactory, FileJob, JobSettings, local_engine, run_file_job
from .settings import TasksConfig, parse_tasks

if TYPE_CHECKING:
    from .batch_job import Engine


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thrifty batch", description="Run OpenAI-format batch files.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or resume) a batch file")
    run.add_argument("input", help="JSONL batch file (custom_id, method, url, body per line)")
    run.add_argument("-o", "--output", required=True, help="JSONL file for the successful results")
    run.add_argument(
        "--errors", help="JSONL file for failed requests and bad lines (default: OUTPUT.errors.jsonl)"
    )
    run.add_argument("--state", help="SQLite job state, for resuming (default: OUTPUT.state.db)")
    target = run.add_mutually_exclusive_group()
    target.add_argument("--url", help="a running thrifty gateway (or any OpenAI-compatible server)")
    target.add_argument("--config", "-c", help="thrifty.yaml: run an in-process gateway")
    run.add_argument("--api-key", help="key for --url (default: $THRIFTY_API_KEY)")
    run.add_argument("--concurrency", help="requests in flight at once: a number, or 'auto' (adaptive)")
    run.add_argument("--retries", type=int, help="retries per request for retryable errors")
    run.add_argument("--timeout", type=float, help="seconds per request, retries included")
    run.add_argument("--max-requests", type=int, help="refuse batches with more requests than this")
    run.add_argument("--ray", metavar="ADDRESS", help="run on this Ray cluster (needs `pip install ray`)")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    return parser


def batch_main(argv: list[str], *, backend: Backend | None = None, progress: TextIO | None = None) -> int:
    """The ``thrifty batch`` command; ``backend`` replaces --url/--config (for Python callers)."""
    args = build_parser().parse_args(argv)
    try:
        tasks, config_path = _settings(args)
        target = backend if backend is not None else _backend(args, config_path, ray=bool(tasks.ray_address))
        job = FileJob(
            input=args.input,
            output=args.output,
            errors=args.errors or f"{args.output}.errors.jsonl",
            state=args.state or f"{args.output}.state.db",
            max_requests=tasks.max_requests,
            limit_name="--max-requests" if args.max_requests else "tasks.batch.max_requests",
        )
        if not os.path.exists(job.input):
            print(f"thrifty batch: error: no such input file: {job.input}", file=sys.stderr)
            return 2
        sink = None if args.quiet else (progress or sys.stderr)
        counts = asyncio.run(_run(job, target, tasks, sink))
    except ThriftyError as exc:
        print(f"thrifty batch: error: {exc.message}", file=sys.stderr)
        return 2
    print(
        f"thrifty batch: {counts['completed']} succeeded, {counts['failed']} failed of {counts['total']}; "
        f"results in {job.output}, errors in {job.errors}",
        file=sys.stderr,
    )
    return 1 if counts["failed"] else 0


def _settings(args: argparse.Namespace) -> tuple[TasksConfig, str | None]:
    tasks = TasksConfig()
    if args.config:
        from ..config import load_config

        tasks = parse_tasks(load_config(args.config))
    if args.concurrency == "auto":
        from .limits import AimdSettings

        tasks = replace(tasks, adaptive=tasks.adaptive or AimdSettings())
    elif args.concurrency is not None:
        if not args.concurrency.isdigit() or int(args.concurrency) < 1:
            raise ThriftyError(
                f"--concurrency must be a positive integer or 'auto', got {args.concurrency!r}"
            )
        tasks = replace(tasks, concurrency=int(args.concurrency), adaptive=None)
    if args.retries is not None:
        tasks = replace(tasks, retries=args.retries)
    if args.timeout is not None:
        tasks = replace(tasks, timeout=args.timeout)
    if args.max_requests is not None:
        tasks = replace(tasks, max_requests=args.max_requests)
    if args.ray:
        tasks = replace(tasks, ray_address=args.ray)
    return tasks, args.config


def _backend(args: argparse.Namespace, config_path: str | None, *, ray: bool) -> Backend | BackendFactory:
    if args.url:
        from ..providers.openai import remote_backend

        factory = functools.partial(
            remote_backend, args.url, args.api_key or os.environ.get("THRIFTY_API_KEY")
        )
        return factory if ray else factory()  # Ray workers each open their own connections
    if config_path:
        from ..gateway import Gateway

        if ray:  # each Ray worker builds its own gateway from the file
            return functools.partial(Gateway.from_config, config_path)
        return Gateway.from_config(config_path)
    raise ThriftyError("give --url GATEWAY_URL or --config thrifty.yaml")


async def _run(
    job: FileJob, backend: Backend | BackendFactory, tasks: TasksConfig, sink: TextIO | None
) -> dict[str, int]:
    settings = JobSettings(
        concurrency=tasks.limit(),
        model_limits=tasks.model_limits,
        retries=tasks.retries,
        timeout=tasks.timeout,
    )
    engine: Engine
    if tasks.ray_address:
        from .ray_engine import ray_engine

        engine = ray_engine(tasks.ray_address, backend, settings, resources=tasks.ray_resources)
        return await run_file_job(job, engine, progress=sink)
    local = backend if isinstance(backend, Backend) else backend()
    await local.start()
    try:
        return await run_file_job(job, local_engine(local, settings), progress=sink)
    finally:
        await local.aclose()
