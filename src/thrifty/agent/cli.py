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
from ..config import Config, load_config
from ..errors import ConfigError, ThriftyError
from .settings import AgentSettings, agent_settings

BackendFactory = Callable[[argparse.Namespace], Backend]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="thrifty agent", description="Answer a question with a parallel tool plan."
    )
    p.add_argument("question")
    p.add_argument(
        "--model",
        "-m",
        help="model for the planner, joiner and llm tool (default: agent.model, "
        "else the gateway's first model)",
    )
    p.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8000")
    p.add_argument("--api-key", help="key for --url (default: $THRIFTY_API_KEY)")
    p.add_argument("--config", "-c", help="YAML config: the in-process gateway and the agent: section")
    p.add_argument("--workspace", help="folder the file tools may read (default: agent.workspace or .)")
    p.add_argument("--allow-host", action="append", default=[], help="host http_get may fetch (repeat)")
    p.add_argument("--cap", type=int, help="most tasks running at once (default: agent.cap, else no cap)")
    p.add_argument("--max-replans", type=int, help="default: agent.max_replans or 2")
    p.add_argument(
        "--planner",
        choices=["text", "tool_calls"],
        default="text",
        help="plan as streamed LLMCompiler text (default) or as native tool calls",
    )
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
        settings, config = _settings(args)
        backend = backend_factory(args) if backend_factory else _backend(args, config)
        return asyncio.run(_run(args, settings, backend))
    except ThriftyError as exc:
        print(f"thrifty agent: {exc.message}", file=sys.stderr)
        return 1 if not isinstance(exc, ConfigError) else 2


def _settings(args: argparse.Namespace) -> tuple[AgentSettings, Config | None]:
    """The agent: section of --config with the command-line flags on top."""
    config = load_config(args.config) if args.config else None
    base = agent_settings(config) if config else AgentSettings()
    first_model = config.models[0].name if config and config.models else None
    settings = AgentSettings(
        model=args.model or base.model or first_model,
        cap=args.cap if args.cap is not None else base.cap,
        max_replans=args.max_replans if args.max_replans is not None else base.max_replans,
        planner_timeout_s=base.planner_timeout_s,
        workspace=args.workspace or base.workspace,
        http_allow=tuple(args.allow_host) or base.http_allow,
    )
    return settings, config


def _backend(args: argparse.Namespace, config: Config | None) -> Backend:
    if args.url:
        from ..config import Deployment
        from ..providers.openai import OpenAIBackend

        if not args.model:
            raise ConfigError("--model is needed with --url")
        base = args.url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        key = args.api_key or os.environ.get("THRIFTY_API_KEY") or None
        deployment = Deployment(
            name="gateway", provider="openai", model=args.model, api_base=base, api_key=key
        )
        return OpenAIBackend(deployment)
    from ..gateway import Gateway

    return Gateway(config) if config is not None else Gateway.from_config(None)


async def _run(args: argparse.Namespace, settings: AgentSettings, backend: Backend) -> int:
    from .agent import run_agent
    from .tools import ToolContext
    from .view import LiveView, timeline

    model = settings.model or _first_model(backend)
    view = None if args.no_live or args.json else LiveView(sys.stderr)
    context = ToolContext(
        workspace=Path(settings.workspace), backend=backend, model=model, http_allow=settings.http_allow
    )
    await backend.start()
    try:
        result = await run_agent(
            args.question,
            backend,
            model=model,
            context=context,
            cap=settings.cap,
            max_replans=settings.max_replans,
            on_event=view,
            planner_timeout_s=settings.planner_timeout_s,
            planner=args.planner,
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


def _first_model(backend: Backend) -> str:
    models = getattr(backend, "models", None)
    names = models() if callable(models) else []
    return str(names[0]) if names else "default"


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
