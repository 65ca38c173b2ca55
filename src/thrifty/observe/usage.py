"""``thrifty usage``: spend, tokens and savings from the ledger, grouped."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GROUPS = {
    "model": "model",
    "deployment": "COALESCE(NULLIF(deployment, ''), '(none)')",
    "tier": "COALESCE(NULLIF(tier, ''), '(unrouted)')",
    "key": "COALESCE(NULLIF(api_key, ''), '(no key)')",
    "team": "COALESCE(NULLIF(team, ''), '(no team)')",
    "user": "COALESCE(NULLIF(end_user, ''), '(no user)')",
    "day": "date(ts, 'unixepoch')",
}
FIELDS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "tokens_saved",
    "cache_hits",
    "cost_usd",
    "cost_top_usd",
    "cost_nocache_usd",
)
# A request's extra upstream calls (verifier calls, escalated answers: ``purpose`` set) are rows of
# their own: their tokens and cost count, they are not requests (nor errors, nor cache hits).
_SUMS = (
    "SUM(purpose = ''), SUM(status >= 400), SUM(prompt_tokens), SUM(completion_tokens), SUM(cached_tokens),"
    " SUM(tokens_saved), SUM(cache LIKE 'hit%' AND purpose = ''), SUM(cost_usd), SUM(cost_top_usd),"
    " SUM(cost_nocache_usd)"
)


def parse_since(text: str, now: float) -> float:
    """``7d``, ``12h``, ``30m`` ago, or a date ``YYYY-MM-DD`` (UTC), as unix time."""
    units = {"d": 86_400, "h": 3_600, "m": 60}
    if text[-1:] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"--since must look like 7d, 12h, 30m or 2026-01-31, got {text!r}") from None
    return day.timestamp()


def summarize(path: str, by: str, since: float = 0.0) -> list[dict[str, Any]]:
    """One row per group, then a row named "total"; each with savings figures."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        expr = GROUPS[by]
        sums = _SUMS
        if "purpose" not in {row[1] for row in db.execute("PRAGMA table_info(requests)")}:
            sums = _SUMS.replace("purpose = ''", "1")  # a ledger from before calls had rows of their own
        rows = db.execute(
            f"SELECT {expr} AS g, {sums} FROM requests WHERE ts >= ? GROUP BY g"
            " ORDER BY SUM(cost_usd) DESC, g",
            (since,),
        ).fetchall()
        total = db.execute(f"SELECT 'total', {sums} FROM requests WHERE ts >= ?", (since,)).fetchone()
    finally:
        db.close()
    out = []
    for row in [*rows, total]:
        item: dict[str, Any] = {by: row[0]}
        item.update({k: v or 0 for k, v in zip(FIELDS, row[1:], strict=True)})
        item["saved_vs_top_usd"] = item["cost_top_usd"] - item["cost_usd"]
        item["saved_vs_nocache_usd"] = item["cost_nocache_usd"] - item["cost_usd"]
        out.append(item)
    return out


def _money(v: float) -> str:
    return f"${v:.6f}" if abs(v) < 0.01 else f"${v:,.4f}"


def _share(part: float, whole: float) -> str:
    return f"{part / whole:.0%}" if whole else "-"


def render(rows: list[dict[str, Any]], by: str) -> str:
    head = (
        by,
        "requests",
        "errors",
        "tokens in",
        "tokens out",
        "cached",
        "compressed out",
        "cache hits",
        "cost",
        "all-on-top",
        "saved",
        "no-cache",
        "saved",
    )
    table = [head]
    for r in rows:
        table.append(
            (
                str(r[by]),
                f"{r['requests']:,}",
                f"{r['errors']:,}",
                f"{r['prompt_tokens']:,}",
                f"{r['completion_tokens']:,}",
                f"{r['cached_tokens']:,}",
                f"{r['tokens_saved']:,}",
                f"{r['cache_hits']:,}",
                _money(r["cost_usd"]),
                _money(r["cost_top_usd"]),
                _share(r["saved_vs_top_usd"], r["cost_top_usd"]),
                _money(r["cost_nocache_usd"]),
                _share(r["saved_vs_nocache_usd"], r["cost_nocache_usd"]),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for n, row in enumerate(table):
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        if n == len(table) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(cells))
    note = (
        "all-on-top: every request priced on the most expensive configured deployment;"
        " no-cache: cache hits and cached prompt tokens at full price;"
        " compressed out: prompt tokens the compressor removed before sending."
    )
    return "\n".join([*lines, "", note])


def default_ledger(config_path: str | None) -> str:
    if config_path:
        from ..config import load_config
        from .settings import parse_ledger

        return parse_ledger(load_config(config_path)).path
    return str(Path(".thrifty") / "ledger.db")


def usage_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="thrifty usage",
        description="Spend, tokens and savings from the usage ledger, against two baselines: "
        "everything on the most expensive deployment, and no cache.",
    )
    parser.add_argument(
        "--by", choices=sorted(GROUPS), default="model", help="how to group rows (default: model)"
    )
    parser.add_argument("--ledger", help="ledger file (default: from --config, else .thrifty/ledger.db)")
    parser.add_argument("--config", help="the gateway's config file, to find its ledger")
    parser.add_argument("--since", help="only requests since then: 7d, 12h, 30m, or a date 2026-01-31 (UTC)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    try:
        path = args.ledger or default_ledger(args.config)
        since = parse_since(args.since, time.time()) if args.since else 0.0
    except Exception as exc:  # ConfigError, a bad --since: print, do not trace
        print(f"thrifty usage: {exc}", file=sys.stderr)
        return 2
    if not Path(path).is_file():
        print(
            f"thrifty usage: no ledger at {path} (serve some requests first, or pass --ledger)",
            file=sys.stderr,
        )
        return 1
    try:
        rows = summarize(path, args.by, since)
    except sqlite3.Error as exc:
        print(f"thrifty usage: cannot read the ledger {path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(rows, indent=2) if args.json else render(rows, args.by))
    return 0
