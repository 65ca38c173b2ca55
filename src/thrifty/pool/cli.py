"""``thrifty worker`` (lend this machine's models to a gateway) and ``thrifty pool`` (admin)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import urllib.error
import urllib.request
from typing import Any


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="thrifty worker",
        description="Join a gateway's pool and serve local models to it (outbound HTTP only).",
    )
    parser.add_argument("--join", required=True, help="the gateway, e.g. http://gateway:8000")
    parser.add_argument(
        "--token", default=os.environ.get("THRIFTY_POOL_TOKEN"), help="join token (or $THRIFTY_POOL_TOKEN)"
    )
    parser.add_argument(
        "--model", action="append", help="a local model to serve (repeatable; default smollm2)"
    )
    parser.add_argument("--n-ctx", type=int, default=2048, help="context size per model")
    parser.add_argument("--concurrency", type=int, default=1, help="tasks at once (one model copy each)")
    parser.add_argument("--tokens-per-s", type=float, help="report this speed instead of measuring it")
    parser.add_argument("--fake", help=argparse.SUPPRESS)  # a scripted answer instead of llama.cpp (tests)
    parser.add_argument("--fake-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.token:
        print("thrifty worker: a join token is needed (--token or $THRIFTY_POOL_TOKEN)", file=sys.stderr)
        return 2
    from .reference_worker import PoolClient, serve
    from .worker import Runner, build_backends, capabilities

    models = args.model or ["smollm2"]
    runner = Runner(
        build_backends(
            models, n_ctx=args.n_ctx, concurrency=args.concurrency, fake=args.fake, fake_delay=args.fake_delay
        )
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        runner.start()
        caps = capabilities(runner, n_ctx=args.n_ctx, concurrency=args.concurrency, speed=args.tokens_per_s)
        print(f"thrifty worker: joining {args.join} with {json.dumps(caps)}", file=sys.stderr, flush=True)
        serve(PoolClient(args.join, args.token), caps, runner.work, stop, concurrency=args.concurrency)
    finally:
        runner.close()
    return 0


def _call(url: str, key: str | None, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        error = json.loads(exc.read() or b"{}").get("error") or {}
        raise SystemExit(f"thrifty pool: {exc.code}: {error.get('message', exc.reason)}") from None
    except OSError as exc:
        raise SystemExit(f"thrifty pool: cannot reach {url}: {exc}") from None


def pool_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thrifty pool", description="The device pool of a running gateway.")
    parser.add_argument("--url", default=os.environ.get("THRIFTY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--key", default=os.environ.get("THRIFTY_API_KEY"), help="an admin key")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("workers", help="workers, their capabilities, load and state; recent migrations")
    tokens = sub.add_parser("tokens", help="list join tokens")
    tokens.add_argument("--json", action="store_true")
    create = sub.add_parser("token", help="create a join token for one worker (printed once)")
    create.add_argument("name")
    revoke = sub.add_parser("revoke", help="revoke a join token: its worker is out, its tasks move")
    revoke.add_argument("token_id")
    args = parser.parse_args(argv)
    if args.action == "workers":
        overview = _call(args.url, args.key, "GET", "/admin/pool/workers")
        print("id\tname\tstate\tload\tmodels\tpower")
        for w in overview["workers"]:
            caps = w["capabilities"]
            models = ",".join(f"{m['name']}({m['n_ctx']},{m['tokens_per_s']:.0f}t/s)" for m in caps["models"])
            print(f"{w['id']}\t{w['name']}\t{w['state']}\t{w['load']}\t{models}\t{caps['power']}")
        print(
            "stats: "
            + ", ".join(f"{k}={v}" for k, v in overview["stats"].items())
            + f", parked={overview['parked']}"
        )
    elif args.action == "tokens":
        listed = _call(args.url, args.key, "GET", "/admin/pool/tokens")["data"]
        if args.json:
            print(json.dumps(listed, indent=2))
        for t in [] if args.json else listed:
            print(f"{t['id']}\t{t['name']}")
    elif args.action == "token":
        made = _call(args.url, args.key, "POST", "/admin/pool/tokens", {"name": args.name})
        print(f"{made['id']}\t{made['name']}\t{made['token']}")
    else:
        _call(args.url, args.key, "DELETE", f"/admin/pool/tokens/{args.token_id}")
        print(f"revoked {args.token_id}")
    return 0
