"""Benchmark reports: per-cell statistics, pairwise comparisons, the concurrency table; markdown, CSV, PNG.

Definitions (also in ``docs/bench/harness.md``):

- **success rate**: graded-correct answers / requests; a failed request counts
  as a wrong answer. Its interval is Wilson's 95% score interval.
- **tokens in / out**: mean prompt and completion tokens per request, as the
  gateway reports them (local models count theirs too).
- **latency p50 / p95**: per request, from the call entering the gateway to
  the answer (queueing inside the gateway included), failed requests excluded.
- **cost per 1,000 requests**: mean USD per request × 1000, from thrifty's
  price table (``thrifty.prices``; local deployments cost 0) or the run's
  ``--price`` overrides.
- **pairwise, B against A** (A is the baseline, listed first): token
  reduction = 1 - tokens(B)/tokens(A) (in + out per request); time reduction
  = 1 - p50(B)/p50(A); success difference = success(B) - success(A) with
  Newcombe's hybrid-score 95% interval (built from the two Wilson intervals;
  it treats the samples as independent, which is conservative for these
  paired tasks); savings = cost/1k(A) - cost/1k(B).
- **ROI of B over A** = (savings + value change) / cost/1k(B), where value
  change = 1000 × (success(B) - success(A)) × V and V (``--value``, USD) is
  what one correct answer is worth to you. It is the net return per dollar
  spent on B, relative to staying on A; shown as "free" when B costs nothing.
- **concurrency**: the same tasks on one model at each worker count; speedup =
  wall time at 1 worker / wall time at w workers.
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Row = dict[str, Any]
Z = 1.959964  # 95%


def wilson(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson's score interval for a proportion (0, 1 when n is 0)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    scale = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / scale
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / scale
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float, float]:
    """p2 - p1 and Newcombe's hybrid-score 95% interval for it."""
    p1, p2 = (s1 / n1 if n1 else 0.0), (s2 / n2 if n2 else 0.0)
    l1, u1 = wilson(s1, n1)
    l2, u2 = wilson(s2, n2)
    d = p2 - p1
    return d, d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2), d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q
    low, high = math.floor(at), math.ceil(at)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


@dataclass(frozen=True)
class Stats:
    n: int
    ok: int
    errors: int
    tokens_in: float
    tokens_out: float
    p50: float | None
    p95: float | None
    mean_latency: float | None
    cost_per_1k: float

    @property
    def success(self) -> float:
        return self.ok / self.n if self.n else 0.0

    @property
    def tokens(self) -> float:
        return self.tokens_in + self.tokens_out


def stats(rows: Sequence[Row]) -> Stats:
    latencies = [float(r["latency_s"]) for r in rows if r.get("latency_s") is not None]
    n = len(rows)
    return Stats(
        n=n,
        ok=sum(1 for r in rows if r.get("ok")),
        errors=sum(1 for r in rows if r.get("error")),
        tokens_in=statistics.fmean([r.get("tokens_in") or 0 for r in rows]) if rows else 0.0,
        tokens_out=statistics.fmean([r.get("tokens_out") or 0 for r in rows]) if rows else 0.0,
        p50=percentile(latencies, 0.5),
        p95=percentile(latencies, 0.95),
        mean_latency=statistics.fmean(latencies) if latencies else None,
        cost_per_1k=1000 * statistics.fmean([r.get("cost") or 0.0 for r in rows]) if rows else 0.0,
    )


def group(rows: Iterable[Row], *keys: str) -> dict[tuple[Any, ...], list[Row]]:
    out: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


# -- formatting ------------------------------------------------------------------------


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.0f}%"


def _usd(value: float) -> str:
    return f"${value:.4f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


CELL_HEADER = (
    "model",
    "domain",
    "type",
    "n",
    "success",
    "95% CI",
    "tokens in",
    "tokens out",
    "p50 s",
    "p95 s",
    "cost/1k",
    "errors",
)


def _cell(model: str, domain: str, kind: str, s: Stats) -> list[str]:
    low, high = wilson(s.ok, s.n)
    return [
        model, domain, kind, str(s.n), f"{s.success:.2f}", f"{low:.2f}-{high:.2f}",
        f"{s.tokens_in:.0f}", f"{s.tokens_out:.0f}", _num(s.p50), _num(s.p95), _usd(s.cost_per_1k), str(s.errors),
    ]  # fmt: skip


def cell_rows(rows: Sequence[Row], models: Sequence[str]) -> list[list[str]]:
    """Per model × domain × type, then per model × domain, then per model."""
    out: list[list[str]] = []
    order = {m: i for i, m in enumerate(models)}
    cells = group(rows, "model", "domain", "type")
    for (m, d, k), rs in sorted(cells.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1], kv[0][2])):
        out.append(_cell(m, d, k, stats(rs)))
    return out


def summary_rows(rows: Sequence[Row], models: Sequence[str]) -> list[list[str]]:
    out: list[list[str]] = []
    by_domain = group(rows, "model", "domain")
    for m in models:
        for (mm, d), rs in sorted(by_domain.items()):
            if mm == m:
                out.append(_cell(m, d, "all", stats(rs)))
        mine = [r for r in rows if r["model"] == m]
        if mine:
            out.append(_cell(m, "**all**", "all", stats(mine)))
    return out


PAIR_HEADER = (
    "B vs A", "domain", "tokens A/B", "token reduction", "p50 A/B s", "time reduction",
    "success A/B", "diff [95% CI]", "cost/1k A/B", "savings/1k", "ROI",
)  # fmt: skip


def pair_rows(rows: Sequence[Row], models: Sequence[str], value: float) -> list[list[str]]:
    out: list[list[str]] = []
    domains = sorted({r["domain"] for r in rows})
    for i, a in enumerate(models):
        for b in models[i + 1 :]:
            for d in [*domains, "all"]:
                ra = [r for r in rows if r["model"] == a and d in (r["domain"], "all")]
                rb = [r for r in rows if r["model"] == b and d in (r["domain"], "all")]
                if ra and rb:
                    out.append(pair(a, b, d, stats(ra), stats(rb), value))
    return out


def roi(sa: Stats, sb: Stats, value: float) -> float | None:
    """(savings + value change) per dollar spent on B, per 1,000 requests; None when B is free."""
    if sb.cost_per_1k <= 0:
        return None
    gain = (sa.cost_per_1k - sb.cost_per_1k) + 1000 * (sb.success - sa.success) * value
    return gain / sb.cost_per_1k


def pair(a: str, b: str, domain: str, sa: Stats, sb: Stats, value: float) -> list[str]:
    d, low, high = newcombe(sa.ok, sa.n, sb.ok, sb.n)
    token_cut = 1 - sb.tokens / sa.tokens if sa.tokens else None
    time_cut = 1 - sb.p50 / sa.p50 if sa.p50 and sb.p50 is not None else None
    r = roi(sa, sb, value)
    return [
        f"{b} vs {a}", domain, f"{sa.tokens:.0f}/{sb.tokens:.0f}", _pct(token_cut),
        f"{_num(sa.p50)}/{_num(sb.p50)}", _pct(time_cut), f"{sa.success:.2f}/{sb.success:.2f}",
        f"{d:+.2f} [{low:+.2f}, {high:+.2f}]", f"{_usd(sa.cost_per_1k)}/{_usd(sb.cost_per_1k)}",
        _usd(sa.cost_per_1k - sb.cost_per_1k), "free" if r is None else f"{r:.1f}",
    ]  # fmt: skip


SWEEP_HEADER = ("workers", "requests", "wall s", "req/s", "speedup", "success", "mean latency s")


def sweep_rows(sweep: Sequence[tuple[int, float, list[Row]]]) -> list[list[str]]:
    if not sweep:
        return []
    base = next((wall for w, wall, _ in sweep if w == 1), sweep[0][1])
    out = []
    for workers, wall, rows in sweep:
        s = stats(rows)
        out.append([
            str(workers), str(s.n), f"{wall:.1f}", _num(s.n / wall if wall else None),
            _num(base / wall if wall else None), f"{s.success:.2f}", _num(s.mean_latency),
        ])  # fmt: skip
    return out


# -- writing ---------------------------------------------------------------------------


def write_reports(
    out: Path,
    rows: Sequence[Row],
    models: Sequence[str],
    sweep: Sequence[tuple[int, float, list[Row]]],
    *,
    value: float,
    header: Sequence[str] = (),
    sweep_model: str = "",
    plot: bool = True,
) -> list[Path]:
    """report.md, results.csv (one line per request), cells.csv, and report.png when matplotlib is there."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "report.md", out / "results.csv", out / "cells.csv"]
    md = markdown(rows, models, sweep, value=value, header=header, sweep_model=sweep_model)
    (out / "report.md").write_text(md, encoding="utf-8")
    _csv(out / "results.csv", RESULT_FIELDS, ([r.get(k) for k in RESULT_FIELDS] for r in rows))
    _csv(out / "cells.csv", CELL_HEADER, cell_rows(rows, models))
    if plot:
        png = plot_report(out / "report.png", rows, models, sweep)
        if png is not None:
            written.append(png)
    return written


RESULT_FIELDS = (
    "model", "task", "domain", "type", "ok", "reason", "tokens_in", "tokens_out", "latency_s", "cost",
    "deployment", "group", "error",
)  # fmt: skip


def _csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def markdown(
    rows: Sequence[Row],
    models: Sequence[str],
    sweep: Sequence[tuple[int, float, list[Row]]],
    *,
    value: float,
    header: Sequence[str] = (),
    sweep_model: str = "",
) -> str:
    lines = ["# thrifty bench report", "", *header, ""]
    lines += ["## Per model and domain", "", *_table(CELL_HEADER, summary_rows(rows, models)), ""]
    lines += ["## Per model, domain and task type", "", *_table(CELL_HEADER, cell_rows(rows, models)), ""]
    if len(models) > 1:
        lines += [f"## Pairwise (B against baseline A; ROI with V = ${value:g} per correct answer)", ""]
        lines += [*_table(PAIR_HEADER, pair_rows(rows, models, value)), ""]
    if sweep:
        lines += [f"## Concurrency ({sweep_model}, through the task manager)", ""]
        lines += [*_table(SWEEP_HEADER, sweep_rows(sweep)), ""]
    return "\n".join(lines)


def plot_report(
    path: Path, rows: Sequence[Row], models: Sequence[str], sweep: Sequence[tuple[int, float, list[Row]]]
) -> Path | None:
    """Success, tokens and latency by domain per model, and the concurrency speedup; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    domains = sorted({r["domain"] for r in rows})
    cells = group(rows, "model", "domain")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    width = 0.8 / max(1, len(models))
    panels: list[tuple[Any, str, Callable[[Stats], float]]] = [
        (axes[0][0], "success rate", lambda s: s.success),
        (axes[0][1], "tokens per request (in + out)", lambda s: s.tokens),
        (axes[1][0], "latency p50 (s)", lambda s: s.p50 or 0.0),
    ]
    for ax, title, metric in panels:
        for i, m in enumerate(models):
            values = [metric(stats(cells.get((m, d), []))) for d in domains]
            ax.bar([j + i * width for j in range(len(domains))], values, width, label=m)
        ax.set_xticks([j + width * (len(models) - 1) / 2 for j in range(len(domains))], domains)
        ax.set_title(title)
    axes[0][0].legend(fontsize=8)
    ax = axes[1][1]
    if sweep:
        base = next((wall for w, wall, _ in sweep if w == 1), sweep[0][1])
        workers = [w for w, _, _ in sweep]
        ax.plot(workers, [base / wall if wall else 0 for _, wall, _ in sweep], marker="o", label="speedup")
        ax.plot(workers, [stats(rs).success for _, _, rs in sweep], marker="s", label="success rate")
        ax.set_xscale("log", base=2)
        ax.set_xticks(workers, [str(w) for w in workers])
        ax.legend(fontsize=8)
    ax.set_title("concurrency (workers)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
