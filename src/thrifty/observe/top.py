"""``thrifty top``: the dashboard's figures in the terminal, refreshed live."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

CLEAR = "\x1b[H\x1b[2J"
BOLD, DIM, GREEN, YELLOW, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[32m", "\x1b[33m", "\x1b[31m", "\x1b[0m"


def fetch(url: str, api_key: str | None, timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url.rstrip("/") + "/dashboard/api/stats")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


def _money(v: float) -> str:
    return f"${v:.6f}" if abs(v) < 0.01 else f"${v:,.4f}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1%}"


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[float]) -> str:
    """Values as a row of block characters, scaled to the largest."""
    top = max(values, default=0) or 1
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1) + 0.5))] for v in values)


def _red(n: float) -> str:
    return f"{RED}{n:,.0f}{RESET}" if n else f"{n:,.0f}"


def _state(d: dict[str, Any]) -> str:
    if not d["healthy"]:
        return f"{RED}unhealthy{RESET}"
    if d["breaker"] == "open":
        return f"{RED}open{RESET}"
    if d["breaker"] == "half_open":
        return f"{YELLOW}half-open{RESET}"
    return f"{GREEN}ok{RESET}"


def upstream_lines(ups: dict[str, Any] | None) -> list[str]:
    """Per deployment: state, breaker openings, attempts, failures by class, window error rate."""
    if not ups or not ups["deployments"]:
        return []
    lines = [
        "",
        f"{BOLD}{'upstreams':<34}{RESET}{'state':<10} {'opened':>6} {'sent':>7} "
        f"{'4xx':>5} {'5xx':>5} {'tmo':>5} {'conn':>5} {'rate':>7}",
    ]
    for d in ups["deployments"]:
        e = d["errors"]
        # the state word carries colour codes: pad it by its visible length
        state = _state(d)
        pad = " " * max(0, 10 - len(state) + len(RED) + len(RESET))
        lines.append(
            f"  {d['group'] + ' / ' + d['deployment']:<32}{state}{pad} {d['times_opened']:>6} {d['attempts']:>7} "
            f"{e.get('4xx', 0):>5} {e.get('5xx', 0):>5} {e.get('timeout', 0):>5} {e.get('connection', 0):>5} "
            f"{_pct(d['error_rate']):>7}"
        )
    for g in ups["groups"]:
        if g["retries"] or g["hedges"]:
            lines.append(
                f"  {DIM}{g['group']}: {g['retries']} retries, {g['hedges']} hedges ({g['hedge_wins']} won){RESET}"
            )
    for f in ups["fallbacks"]:
        lines.append(f"  {YELLOW}fallback {f['from']} -> {f['to']}: {f['count']}{RESET}")
    for c in ups["transitions"][:3]:
        stamp = time.strftime("%H:%M:%S", time.localtime(c["at"]))
        lines.append(f"  {DIM}{stamp} {c['deployment']}: {c['what']} {c['state']} ({c['reason']}){RESET}")
    return lines


def render(stats: dict[str, Any], url: str) -> str:
    t = stats["totals"]
    top, nocache = t["cost_top_usd"], t["cost_nocache_usd"]
    speedup = stats["parallel"]["speedup"]
    lines = [
        f"{BOLD}thrifty top{RESET}  {url}  {DIM}{time.strftime('%H:%M:%S', time.localtime(stats['now']))}{RESET}",
        "",
        f"requests {BOLD}{t['requests']:,.0f}{RESET}  errors {_red(t['errors'])}  "
        f"upstream failures {_red(t.get('upstream_errors', 0))}  fallbacks {_red(t.get('fallbacks', 0))}  "
        f"tokens in {t['prompt_tokens']:,.0f} out {t['completion_tokens']:,.0f} cached {t['cached_tokens']:,.0f}",
        f"cost {BOLD}{_money(t['cost_usd'])}{RESET}  saved vs all-on-top {GREEN}{_money(t['saved_vs_top_usd'])}"
        f" ({_pct(t['saved_vs_top_usd'] / top if top else None)}){RESET}  saved vs no-cache "
        f"{GREEN}{_money(t['saved_vs_nocache_usd'])} ({_pct(t['saved_vs_nocache_usd'] / nocache if nocache else None)}){RESET}",
        f"cache hit rate {_pct(stats['cache']['hit_rate'])}  parallel speedup "
        f"{'n/a' if speedup is None else f'{speedup:.2f}x'}  memory {stats['memory_mb']:.0f} MB",
        f"traffic  {GREEN}{sparkline([b['requests'] for b in stats['series'][-60:]])}{RESET}"
        f"  {DIM}requests per {stats['bucket_s']:.0f} s{RESET}",
        "",
        f"{BOLD}routes{RESET}",
    ]
    routes = stats["routes"]
    total = sum(routes.values()) or 1
    for tier, n in sorted(routes.items(), key=lambda kv: -kv[1]):
        bar = "█" * max(1, round(30 * n / total))
        lines.append(f"  {tier:<14} {bar:<30} {n:>8,.0f} {n / total:6.1%}")
    if not routes:
        lines.append(f"  {DIM}no routed requests{RESET}")
    lines += ["", f"{BOLD}{'latency (window)':<21}{RESET}{'n':>7} {'p50':>9} {'p95':>9} {'p99':>9}"]
    for model, f in stats["latency"].items():
        lines.append(
            f"  {model:<18} {f['requests']:>7} {_ms(f['p50']):>9} {_ms(f['p95']):>9} {_ms(f['p99']):>9}"
        )
    lines += upstream_lines(stats.get("upstreams"))
    lines += ["", f"{BOLD}alerts{RESET}"]
    lines += [f"  {YELLOW}! {a['message']}{RESET}" for a in stats["alerts"]] or [f"  {GREEN}all clear{RESET}"]
    lines += ["", f"{BOLD}recent{RESET}"]
    for r in stats["recent"][:10]:
        status = f"{RED}{r['status']}{RESET}" if r["status"] >= 400 else str(r["status"])
        lines.append(
            f"  {r['request_id'][-12:]:<12} {r['model']:<14} {r['tier'] or '-':<10} {r['cache'] or '-':<13}"
            f" {status:>3} {r['latency_ms']:>8.1f} ms {_money(r['cost_usd']):>10}"
        )
    return "\n".join(lines)


def top_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="thrifty top", description="Live gateway figures in the terminal.")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the gateway (default: %(default)s)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    parser.add_argument("--iterations", type=int, default=0, help="stop after this many refreshes (0: never)")
    parser.add_argument(
        "--api-key", default=os.environ.get("THRIFTY_API_KEY"), help="default: $THRIFTY_API_KEY"
    )
    args = parser.parse_args(argv)
    shown = 0
    done = 0
    try:
        while True:
            try:
                screen = render(fetch(args.url, args.api_key), args.url)
                shown += 1
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                screen = f"thrifty top: cannot read {args.url}/dashboard/api/stats: {exc}"
            sys.stdout.write(CLEAR + screen + "\n")
            sys.stdout.flush()
            done += 1
            if args.iterations and done >= args.iterations:
                break
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0 if shown else 1
