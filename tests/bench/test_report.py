"""Report statistics: intervals against published values, percentiles, pairwise rows, ROI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from thrifty.bench import report


def test_wilson_and_newcombe_match_newcombe_1998() -> None:
    assert report.wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    d, low, high = report.newcombe(48, 80, 56, 70)  # example (a): 56/70 - 48/80
    assert (d, low, high) == pytest.approx((0.2, 0.0524, 0.3339), abs=1e-4)
    assert report.wilson(0, 0) == (0.0, 1.0)
    assert report.wilson(5, 5)[1] == 1.0


def test_percentiles_interpolate() -> None:
    assert report.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert report.percentile([5.0], 0.95) == 5.0
    assert report.percentile([], 0.5) is None


def row(
    model: str, ok: bool, tokens: int, latency: float | None, cost: float, domain: str = "maze"
) -> dict[str, Any]:
    return {
        "model": model, "domain": domain, "type": "solving", "ok": ok, "tokens_in": tokens, "tokens_out": tokens,
        "latency_s": latency, "cost": cost, "error": None if latency is not None else "timeout",
    }  # fmt: skip


def test_pairwise_reductions_savings_and_roi() -> None:
    a = [row("big", True, 100, 2.0, 0.002) for _ in range(4)]
    b = [row("small", i < 3, 50, 1.0, 0.0005) for i in range(4)]
    (maze, total) = report.pair_rows(a + b, ["big", "small"], value=0.01)
    assert maze[:2] == ["small vs big", "maze"] and total[1] == "all"
    assert maze[3] == "+50%" and maze[5] == "+50%"  # half the tokens, half the time
    assert maze[9] == "$1.5000"  # $2.00 - $0.50 per 1,000 requests
    # ROI = (1.5 + 1000 * (0.75 - 1.0) * 0.01) / 0.5 = (1.5 - 2.5) / 0.5
    assert maze[10] == "-2.0"
    free = [row("local", True, 50, 1.0, 0.0) for _ in range(4)]
    assert report.pair_rows(a + free, ["big", "local"], value=0.01)[0][10] == "free"


def test_failed_requests_count_as_wrong_and_carry_no_latency() -> None:
    s = report.stats([row("m", True, 10, 1.0, 0.0), row("m", False, 0, None, 0.0)])
    assert (s.n, s.ok, s.errors, s.success, s.p50) == (2, 1, 1, 0.5, 1.0)


def test_reports_are_written(tmp_path: Path) -> None:
    rows = [row("a", True, 10, 1.0, 0.001), row("b", False, 5, 0.5, 0.0, domain="image")]
    sweep = [(1, 4.0, rows[:1]), (2, 2.0, rows[:1])]
    paths = report.write_reports(tmp_path, rows, ["a", "b"], sweep, value=0.01, sweep_model="a")
    md = (tmp_path / "report.md").read_text()
    assert "## Pairwise" in md and "## Concurrency (a" in md
    assert "| 2 | 1 | 2.0 | 0.50 | 2.00 |" in md  # 2 workers: twice as fast as 1
    assert (tmp_path / "results.csv").read_text().count("\n") == 3
    assert (tmp_path / "report.png") in paths and (tmp_path / "report.png").stat().st_size > 1000
