"""``thrifty compress FILE.json --mode balanced``: what would be sent, and the saving.

FILE holds a chat request (``{"messages": [...], ...}``) or a bare list of
messages; ``-`` reads standard input. The compressed request goes to standard
output as JSON, the saving to standard error. ``python -m thrifty.compress`` is
the same command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .engine import shrink
from .settings import MODES, Knobs
from .tokens import exact_counter, messages_tokens


def compress_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="thrifty compress",
        description="Print a chat request as the compressor would send it, and the tokens it saves.",
    )
    parser.add_argument("file", help="a chat request or a list of messages, as JSON ('-': standard input)")
    parser.add_argument("--mode", choices=MODES[1:], default="balanced")
    parser.add_argument(
        "--ratio", type=float, default=Knobs.ratio, help="aggressive: share of the context kept"
    )
    parser.add_argument("--budget-tokens", type=int, default=Knobs.budget_tokens)
    args = parser.parse_args(argv)
    try:
        raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
        data: Any = json.loads(raw)
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    messages = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        print(f"{args.file}: expected a chat request with 'messages' or a list of messages", file=sys.stderr)
        return 2
    knobs = Knobs(mode=args.mode, ratio=args.ratio, budget_tokens=args.budget_tokens)
    out, tally = shrink(messages, knobs)
    count = exact_counter()
    before, after = messages_tokens(messages, count), messages_tokens(out, count)
    result = {**data, "messages": out} if isinstance(data, dict) else out
    print(json.dumps(result, indent=2, ensure_ascii=False))
    removed = " ".join(f"{what}={n}" for what, n in tally.items())
    saved = 100 * (1 - after / before) if before else 0.0
    print(
        f"{args.mode}: {before:,} -> {after:,} tokens ({saved:.1f}% saved) {removed}".rstrip(),
        file=sys.stderr,
    )
    return 0
