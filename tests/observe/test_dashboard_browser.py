"""The dashboard in real headless Chromium shows what the ledger holds, and keeps up."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from thrifty.observe import Observer

from .helpers import event, make_config, serve, served

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# The committed screenshot is refreshed only on request, so test runs leave the tree clean.
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]
KEY = "sk-dashboard-admin"
TIERS = {
    "fast": "fast/openai/gpt-4o-mini",
    "balanced": "balanced/anthropic/claude-3-5-haiku-latest",
    "smart": "smart/openai/gpt-4o",
}


def known_traffic(obs: Observer, n: int = 240) -> None:
    """Five minutes of mixed traffic: mostly fast, some cache hits, a slow smart tier, two errors."""
    start = time.time() - 300
    for i in range(n):
        tier = "fast" if i % 10 < 6 else "balanced" if i % 10 < 9 else "smart"
        cache = "hit-exact" if i % 3 == 0 else "hit-semantic" if i % 11 == 0 else "miss"
        slow = tier == "smart"
        obs.record(
            event(
                i,
                ts=start + i * 300 / n,
                model="auto",
                deployment="" if cache != "miss" else TIERS[tier],
                prompt_tokens=400 + (i * 37) % 900,
                completion_tokens=80 + (i * 13) % 300,
                latency_s=(2.4 + (i % 5) * 0.3) if slow else 0.15 + (i % 9) * 0.05,
                ttft_s=0.05,
                status=502 if i in (50, 150) else 200,
                error_type="upstream_error" if i in (50, 150) else None,
                **served(tier, cache),
            )
        )


def ledger_figures(path: str) -> dict[str, float]:
    db = sqlite3.connect(path)
    try:
        n, cost, top, nocache, hits, lookups = db.execute(
            "SELECT COUNT(*), SUM(cost_usd), SUM(cost_top_usd), SUM(cost_nocache_usd),"
            " SUM(cache LIKE 'hit%'), SUM(cache != '') FROM requests"
        ).fetchone()
        tiers = dict(db.execute("SELECT tier, COUNT(*) FROM requests GROUP BY tier").fetchall())
        recent = [r[0] for r in db.execute("SELECT request_id FROM requests ORDER BY ts DESC LIMIT 50")]
    finally:
        db.close()
    return {
        "requests": n,
        "cost": cost,
        "saved_top": top - cost,
        "saved_nocache": nocache - cost,
        "hit_rate": hits / lookups,
        **{f"tier:{k}": v for k, v in tiers.items()},
        "recent": recent,
    }  # type: ignore[dict-item]


def test_dashboard_shows_the_ledger_figures_and_updates_live(tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    config = make_config(
        tmp_path,
        server={"data_dir": str(tmp_path), "api_keys": [KEY]},
        models=[
            {"name": "fast", "deployments": [{"model": "openai/gpt-4o-mini"}]},
            {"name": "balanced", "deployments": [{"model": "anthropic/claude-3-5-haiku-latest"}]},
            {"name": "smart", "deployments": [{"model": "openai/gpt-4o"}]},
        ],
        alerts={"min_requests": 10, "memory_mb": None},
    )  # memory depends on the whole test process
    obs = Observer(config)
    obs.add_gauge_source("agent", lambda: {"speedup": 2.4, "parallel_share": 0.8})
    obs.add_gauge_source("Breaker:smart/openai/gpt-4o", lambda: {"state": 0.0, "failures": 2.0})
    obs.mark_ready(0.31)
    known_traffic(obs)
    with serve(obs) as url, sync_playwright() as pw:
        obs.flush()
        want = ledger_figures(obs.ledger_settings.path)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        referers: list[str | None] = []
        page.on("request", lambda r: referers.append(r.headers.get("referer")))
        page.goto(url + "/dashboard?interval=200")
        page.wait_for_selector("#login:not([hidden])")  # keys are configured: the page asks for one
        page.fill("#login-key", KEY)
        page.click("#login-submit")
        page.wait_for_selector("body[data-rendered]")
        assert "key" not in page.url and KEY not in page.url
        assert page.is_hidden("#login")
        assert referers and not any(referers)  # Referrer-Policy: no-referrer

        def value(element_id: str) -> float:
            return float(page.get_attribute(f"#{element_id}", "data-value") or "nan")

        assert value("kpi-requests") == want["requests"] == 240
        assert math.isclose(value("kpi-cost"), want["cost"], rel_tol=1e-9, abs_tol=1e-12)
        assert page.inner_text("#kpi-cost") == f"${want['cost']:.4f}"
        assert math.isclose(value("kpi-saved-top"), want["saved_top"], rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(value("kpi-saved-nocache"), want["saved_nocache"], rel_tol=1e-9, abs_tol=1e-12)
        assert math.isclose(value("kpi-hit-rate"), want["hit_rate"], rel_tol=1e-9, abs_tol=1e-12)
        assert page.inner_text("#kpi-hit-rate") == f"{want['hit_rate'] * 100:.1f}%"
        for tier in TIERS:
            assert float(page.get_attribute(f"#route-{tier}", "data-count") or 0) == want[f"tier:{tier}"]
        shown = page.eval_on_selector_all("#recent tr", "rows => rows.map(r => r.dataset.id)")
        assert shown == want["recent"]
        assert page.inner_text("#kpi-speedup") == "2.40×"
        assert page.eval_on_selector_all("#alerts li", "li => li.map(x => x.dataset.rule)") == [
            "p95_latency_s"
        ]
        assert (
            page.locator("#chart-cost path").count() == 3 and page.locator("#chart-latency path").count() == 3
        )
        shot = DOCS_SCREENSHOT if os.environ.get("THRIFTY_SAVE_SCREENSHOTS") else tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000

        for i in range(1000, 1005):
            obs.record(event(i, model="auto", **served("fast", "miss")))
        page.wait_for_function("document.getElementById('kpi-requests').dataset.value === '245'")
        assert page.get_attribute("#recent tr", "data-id") == "chatcmpl-1004"
        browser.close()
