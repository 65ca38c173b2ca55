"""The ``thrifty`` command. Parsing is cheap; each command imports what it needs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from . import __version__

if TYPE_CHECKING:
    from .config import Config

DESCRIPTION = """\
thrifty: an OpenAI-compatible LLM gateway that makes every call cheaper, faster, sturdier.

With no config file it serves the embedded SmolLM2-135M model: no key, no network.
Point any OpenAI client at http://127.0.0.1:8000/v1 once `thrifty serve` is running."""

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _load(path: str | None) -> Config | None:
    """The config file, or the embedded-model default; None (and a message) when invalid."""
    from .config import default_config, load_config
    from .errors import ConfigError

    try:
        return load_config(path) if path else default_config()
    except ConfigError as exc:
        print(f"thrifty: invalid config: {exc.message}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    import os

    keys = config.server.api_keys or tuple(k for k in os.environ.get("THRIFTY_API_KEYS", "").split(",") if k)
    if host not in LOOPBACK and not (keys or config.server.client_keys):
        print(
            f"thrifty: refusing to listen on {host} without an API key: anyone on the network could "
            "use your models.\nSet one with `server: {api_keys: [os.environ/THRIFTY_KEY]}` in the "
            "config file or THRIFTY_API_KEYS=key1,key2 in the environment.",
            file=sys.stderr,
        )
        return 2
    from dataclasses import replace

    config = replace(config, server=replace(config.server, host=host, port=port, api_keys=keys))
    from .server.run import serve

    return serve(config, replicas=args.replicas, log_level=args.log_level, workers=args.workers)


def _chat(args: argparse.Namespace) -> int:
    from .server.chat import run_chat

    return run_chat(args)


def _models(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    for group in config.models:
        deployments = ", ".join(f"{d.provider}:{d.model}" for d in group.deployments)
        print(f"{group.name}\t{deployments}")
    for router in (config.sections.get("routing") or {}).get("routers") or ():
        if isinstance(router, dict):
            print(f"{router.get('name')}\trouter:{router.get('policy')}")
    return 0


def route_main(argv: list[str]) -> int:
    """``thrifty route explain "prompt"``, ``thrifty route fit [...]`` and ``thrifty route eval [...]``."""
    if argv[:1] == ["eval"]:
        from .routing import eval_main

        return eval_main(argv[1:])
    if argv[:1] == ["fit"]:
        from .routing import fit_main

        return fit_main(argv[1:])
    parser = argparse.ArgumentParser(prog="thrifty route", description="Explain or evaluate routing.")
    sub = parser.add_subparsers(dest="action", required=True)
    explain = sub.add_parser("explain", help="show the routing decision and the features behind it")
    explain.add_argument("prompt")
    explain.add_argument("--config", "-c", help="YAML config with a routing section")
    sub.add_parser("fit", help="fit a learned router on your own outcome data (fit --help)")
    sub.add_parser("eval", help="evaluate routers offline: the shared data, or --data FILE --router R.npz")
    args = parser.parse_args(argv)
    import json

    from .routing import explain as explain_route

    config = _load(args.config)
    if config is None:
        return 2
    print(json.dumps(explain_route(args.prompt, config), indent=2))
    return 0


# Commands implemented by a capability package, which parses its own flags.
DELEGATED = {
    "route": ("thrifty.cli", "route_main", "explain a routing decision, or evaluate routers offline"),
    "agent": ("thrifty.agent.cli", "agent_main", "answer a question with a parallel tool plan"),
    "batch": ("thrifty.tasks.cli", "batch_main", "run an OpenAI-format batch file, resumably"),
    "bench": ("thrifty.bench.cli", "bench_main", "compare models and routers on generated, graded tasks"),
    "usage": ("thrifty.observe.usage", "usage_main", "cost and token usage from the ledger"),
    "top": ("thrifty.observe.top", "top_main", "live view of a running gateway"),
    "keys": ("thrifty.tenancy.cli", "keys_main", "create, list, update, rotate and revoke virtual keys"),
    "teams": ("thrifty.tenancy.cli", "teams_main", "create, list and update teams (budgets, limits)"),
    "compress": ("thrifty.compress.cli", "compress_main", "show a request as the compressor would send it"),
    "worker": ("thrifty.pool.cli", "worker_main", "lend this machine's models to a gateway's pool"),
    "pool": ("thrifty.pool.cli", "pool_main", "the device pool: workers, join tokens"),
    "cache": ("thrifty.cache.cli", "cache_main", "fit a pair scorer for the semantic cache"),
}


def _delegated(name: str, argv: list[str]) -> int:
    import importlib

    module, func, _ = DELEGATED[name]
    run: Callable[[list[str]], int] = getattr(importlib.import_module(module), func)
    return run(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="thrifty", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"thrifty {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the OpenAI-compatible gateway")
    serve.add_argument("--config", "-c", help="YAML config file (default: the embedded local model)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", "-p", type=int, help="port (default 8000)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="serve from N processes sharing the port (limits shared through tenancy.redis_url)",
    )
    serve.add_argument(
        "--replicas",
        type=int,
        default=0,
        help="serve the embedded model from N supervised worker processes, balanced",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    chat = sub.add_parser("chat", help="ask a model once, or chat interactively (no prompt)")
    chat.add_argument("prompt", nargs="?", help="the prompt; omit for an interactive session")
    chat.add_argument("--model", "-m", help="model name (default: the first configured)")
    chat.add_argument("--url", help="a running gateway, e.g. http://127.0.0.1:8000 (default: in-process)")
    chat.add_argument("--config", "-c", help="YAML config file for the in-process gateway")
    chat.add_argument("--system", "-s", help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float)
    chat.add_argument("--api-key", help="key for --url (default: $THRIFTY_API_KEY)")
    chat.set_defaults(func=_chat)

    models = sub.add_parser("models", help="list the configured model names")
    models.add_argument("--config", "-c", help="YAML config file")
    models.set_defaults(func=_models)

    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        try:
            return _delegated(argv[0], argv[1:])
        except KeyboardInterrupt:
            return 130
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
