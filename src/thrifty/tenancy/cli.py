"""``thrifty keys …`` and ``thrifty teams …``: manage virtual keys and teams in the configured database.

    thrifty keys create --name ci-bot --team search --budget 50/month --rpm 600 --tpm 200000 \\
        --models fast,smart --expires 30d
    thrifty keys list [--team search] | show ID | update ID --rpm 100 | rotate ID | revoke ID
    thrifty teams create search --budget 500/month | list | show search | update search --tpm 1000000
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--budget", help="USD per period: 50/month, 5/day, 20/week, or 100 (total)")
    p.add_argument("--rpm", type=int, help="requests per minute")
    p.add_argument("--tpm", type=int, help="tokens per minute")
    p.add_argument("--parallel", type=int, help="requests in flight")
    p.add_argument("--models", help="comma-separated model names this key may use (default: all)")


def _body(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _parser(prog: str) -> tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", "-c", help="YAML config file (its tenancy.database_url or server.data_dir)"
    )
    sub = parser.add_subparsers(dest="action", required=True)

    def add(name: str, **kw: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], **kw)

    return parser, add


def keys_main(argv: list[str]) -> int:
    parser, add = _parser("thrifty keys")
    create = add("create", help="a new key; its secret is printed once")
    create.add_argument("--name", required=True)
    create.add_argument("--team")
    create.add_argument("--role", choices=["client", "admin"], default="client")
    create.add_argument("--expires", help="lifetime: 30d, 12h, 90m")
    _policy_flags(create)
    listing = add("list")
    listing.add_argument("--team")
    for name in ("show", "rotate", "revoke"):
        add(name).add_argument("id")
    update = add("update")
    update.add_argument("id")
    update.add_argument("--expires")
    _policy_flags(update)
    args = parser.parse_args(argv)

    def run(admin: Any) -> Any:
        policy = ("budget", "rpm", "tpm", "parallel", "models")
        if args.action == "create":
            return admin.create_key(_body(args, "name", "team", "role", "expires", *policy))
        if args.action == "list":
            return admin.list_keys(args.team)
        if args.action == "update":
            return admin.update_key(args.id, _body(args, "expires", *policy))
        return getattr(admin, f"{args.action}_key" if args.action != "show" else "get_key")(args.id)

    return _run(args.config, run)


def teams_main(argv: list[str]) -> int:
    parser, add = _parser("thrifty teams")
    create = add("create")
    create.add_argument("name")
    _policy_flags(create)
    add("list")
    add("show").add_argument("name")
    update = add("update")
    update.add_argument("name")
    _policy_flags(update)
    args = parser.parse_args(argv)

    def run(admin: Any) -> Any:
        policy = ("budget", "rpm", "tpm", "parallel", "models")
        if args.action == "create":
            return admin.create_team(_body(args, "name", *policy))
        if args.action == "list":
            return admin.list_teams()
        if args.action == "update":
            return admin.update_team(args.name, _body(args, *policy))
        return admin.get_team(args.name)

    return _run(args.config, run)


def _run(config_path: str | None, action: Any) -> int:
    from ..config import default_config, load_config
    from ..errors import ThriftyError
    from .admin import KeyAdmin
    from .settings import parse_tenancy
    from .store import KeyStore

    try:
        config = load_config(config_path) if config_path else default_config()
        store = KeyStore.open(parse_tenancy(config).database_url)
        try:
            result = action(KeyAdmin(store, [g.name for g in config.models] + _routers(config)))
        finally:
            store.close()
    except ThriftyError as exc:
        print(f"thrifty: {exc.message}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    if isinstance(result, dict) and "secret" in result:
        print("thrifty: the secret is shown only this once; store it now.", file=sys.stderr)
    return 0


def _routers(config: Any) -> list[str]:
    routing = config.sections.get("routing") or {}
    names = [r.get("name") for r in (routing.get("routers") or ()) if isinstance(r, dict)]
    fallbacks = config.sections.get("fallbacks") or {}
    return [n for n in names if isinstance(n, str)] + [n for n in fallbacks if isinstance(n, str)]
