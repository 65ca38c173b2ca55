"""``thrifty agent "question"``: plan, run the graph live, print the answer and a timeline."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backend import Backend
from ..errors import ThriftyError

BackendFactory = Callable[[argparse.Namespace], Backend]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="thrifty agent", description="Answer a question with a parallel tool plan.")
    p.add_argument("question")
    p.add_argument("--model", "-m", default="default", help="model for the planner, joiner and llm tool")
    p.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="key for --url (default: $THRIFTY_API_KEY)")
    p.add_argument("--config", "-c", help="YAML config for an in-process gateway")
    p.add_argument("--workspace", default=".", help="folder the file tools may read (default: .)")
    p.add_argument("--allow-host", action="append", default=[], help="host http_get may fetch (repeat)")
    p.add_argument("--cap", type=int, help="most tasks running at once (default: no cap)")
    p.add_argument("--max-replans", type=int, default=2)
    p.add_argument("--no-live", action="store_true", help="no live graph view")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def agent_main(argv: list[str], *, backend_factory: BackendFactory | None = None) -> int:
    """Entry point of ``thrifty agent``; ``backend_factory`` overrides --url/--config."""
    args = build_parser().parse_args(argv)
    if args.cap is not None and args.cap < 1:
        print("thrifty agent: --cap must be at least 1", file=sys.stderr)
        return 2
    try:
        backend = backend_factory(args) if backend_factory else _backend(args)
        return asyncio.run(_run(args, backend))
    except ThriftyError as exc:
        print(f"thrifty agent: {exc.message}", file=sys.stderr)
        return 1


def _backend(args: argparse.Namespace) -> Backend:
    if args.url:
        from ..config import Deployment
        from ..providers.openai import OpenAIBackend

        base = args.url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        key = args.api_key or os.environ.get("THRIFTY_API_KEY") or None
        deployment = Deployment(name="gateway", provider="openai", model=args.model, api_base=base, api_key=key)
        return OpenAIBackend(deployment)
    from ..gateway import Gateway

    return Gateway.from_config(args.config)


async def _run(args: argparse.Namespace, backend: Backend) -> int:
    from .agent import run_agent
    from .tools import ToolContext
    from .view import LiveView, timeline

    view = None if args.no_live or args.json else LiveView(sys.stderr)
    context = ToolContext(
        workspace=Path(args.workspace),
        backend=backend,
        model=args.model,
        http_allow=tuple(args.allow_host),
    )
    await backend.start()
    try:
        result = await run_agent(
            args.question, backend, model=args.model, context=context, cap=args.cap,
            max_replans=args.max_replans, on_event=view,
        )
    finally:
        await backend.aclose()
    if args.json:
        print(json.dumps(_as_json(result), indent=2, default=str))
    else:
        if view is not None and not view.live:
            print("\n".join(view.render()), file=sys.stderr)
        print(timeline(result.tasks), file=sys.stderr)
        if result.error:
            print(f"thrifty agent: {result.error}", file=sys.stderr)
        print(result.answer)
    return 0 if result.ok else 1


def _as_json(result: Any) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "error": result.error,
        "replans": result.replans,
        "elapsed_s": round(result.elapsed_s, 4),
        "tasks": [
            {
                "id": r.id,
                "tool": r.task.tool,
                "args": r.task.args,
                "state": r.state.value,
                "result": r.result,
                "error": None if r.error is None else str(r.error),
                "started_s": r.started,
                "ended_s": r.ended,
                "attempts": r.attempts,
            }
            for r in result.tasks
        ],
    }
