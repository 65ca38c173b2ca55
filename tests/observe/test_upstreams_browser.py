"""The dashboard in real headless Chromium shows a dead deployment and its alert."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from .live import dead_primary
from .test_dashboard_browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]
MSG = [{"role": "user", "content": "hello"}]


def test_the_dashboard_shows_the_dead_deployment_and_its_alert(tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with dead_primary(tmp_path, startup_ms=None, memory_mb=None) as live, sync_playwright() as pw:
        for _ in range(12):
            r = httpx.post(
                live.url + "/v1/chat/completions", json={"model": "primary", "messages": MSG}, timeout=30
            )
            assert r.status_code == 200 and r.headers["x-thrifty-fallback"] == "primary->backup"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(live.url + "/dashboard?interval=200")
        page.wait_for_selector("body[data-rendered]")
        page.wait_for_selector("#upstreams tr[data-deployment='dead'][data-state='down']")
        dead = page.inner_text("#upstreams tr[data-deployment='dead']")
        alive = page.get_attribute("#upstreams tr[data-deployment='alive']", "data-state")
        connection = page.inner_text("#upstreams tr[data-deployment='dead'] td[data-class='connection']")
        alert = page.inner_text("#alerts li[data-rule='deployment_down_s']")
        fallback = page.inner_text("#upstream-groups li.fallback")
        changes = page.inner_text("#upstream-changes")
        errors = page.inner_text("#kpi-errors")
        browser.close()
    assert "breaker open" in dead and alive == "ok" and connection == "5"
    assert alert.startswith("deployment dead of primary is down (breaker open)")
    assert fallback.startswith("fallback primary → backup: 12")
    assert "dead: breaker open (5 consecutive failures, last: connection)" in changes
    assert errors == "0 errors · 5 upstream failures · 12 fallbacks"
