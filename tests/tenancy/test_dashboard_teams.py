"""The dashboard's team view: spend, budgets and limits per team and per key, from a real
`thrifty serve` (SQLite tenancy, a priced fake upstream), in real headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.processes import free_port, serve, stop, wait_ready

from . import test_replicas

ADMIN = "sk-admin-team-view"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[str]:
    up_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    procs = [upstream]
    try:
        wait_ready(f"http://127.0.0.1:{up_port}/health", upstream)
        cfg = tmp_path / "thrifty.yaml"
        cfg.write_text(f"""
server: {{api_keys: [{ADMIN}], data_dir: {tmp_path}}}
tenancy: {{cache_ttl: 0.2}}
models:
  - name: fake
    deployments:
      - {{provider: openai, model: m, api_base: "http://127.0.0.1:{up_port}/v1", api_key: sk-up, price_model: gpt-4o}}
""")
        proc, url = serve(cfg)
        procs.append(proc)
        yield url
    finally:
        for proc in reversed(procs):
            stop(proc)


def call(
    url: str, path: str, body: dict[str, Any] | None = None, key: str = ADMIN, method: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    return test_replicas.call(url, path, body, key=key, method=method)


def _chat(url: str, key: str) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    assert call(url, "/v1/chat/completions", body, key=key)[0] == 200


def _spend_settles(url: str, key_id: str, requests: int) -> dict[str, Any]:
    """The key's spend once the gateway has written all ``requests`` (about once a second)."""
    deadline = time.monotonic() + 20
    while True:
        _, shown, _ = call(url, f"/admin/keys/{key_id}")
        spend = shown["spend"]
        if spend["period_usd"] >= requests * 0.001 or time.monotonic() > deadline:  # ~$0.001 each (gpt-4o)
            return spend  # type: ignore[no-any-return]
        time.sleep(0.1)


def _teams(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    _, body, _ = call(url, "/dashboard/api/teams")
    return {t["name"]: t for t in body["teams"]}, {k["name"]: k for k in body["keys"]}


def _setup(url: str) -> dict[str, dict[str, Any]]:
    assert call(url, "/admin/teams", {"name": "search", "budget": "1/day", "rpm": 1000})[0] == 201
    keys = {}
    for body in (
        {"name": "ci-bot", "team": "search", "budget": "0.5/day", "rpm": 600, "tpm": 200000},
        {"name": "indexer", "team": "search", "parallel": 4},
        {"name": "loner"},
    ):
        status, keys[str(body["name"])], _ = call(url, "/admin/keys", body)
        assert status == 201
    assert call(url, f"/admin/keys/{keys['indexer']['id']}", method="DELETE")[0] == 200
    return keys


def test_the_team_view_needs_an_admin_and_shows_every_team_and_key(gateway: str) -> None:
    keys = _setup(gateway)
    for _ in range(3):
        _chat(gateway, keys["ci-bot"]["secret"])
    spend = _spend_settles(gateway, keys["ci-bot"]["id"], 3)
    teams, listed = _teams(gateway)
    assert listed["ci-bot"]["spend"] == spend and listed["ci-bot"]["rpm"] == 600
    assert teams["search"]["spend"]["period_usd"] == pytest.approx(spend["period_usd"])
    assert teams["search"]["spend"]["left_usd"] == pytest.approx(1 - spend["period_usd"], abs=2e-6)
    assert listed["indexer"]["revoked_at"] is not None and listed["loner"]["team"] is None
    # a client key may not read other teams' spend; no key at all is 401
    status, body, _ = call(gateway, "/dashboard/api/teams", key=keys["ci-bot"]["secret"])
    assert status == 403 and body["error"]["message"]
    assert call(gateway, "/dashboard/api/teams", key="")[0] == 401


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed")
def test_the_dashboard_team_view_shows_spend_budgets_and_limits_and_keeps_up(gateway: str) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    keys = _setup(gateway)
    for _ in range(2):
        _chat(gateway, keys["ci-bot"]["secret"])
    _spend_settles(gateway, keys["ci-bot"]["id"], 2)
    teams, listed = _teams(gateway)
    bot, team = listed["ci-bot"], teams["search"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(gateway + "/dashboard?interval=300")
        page.wait_for_selector("#login:not([hidden])")
        page.fill("#login-key", ADMIN)
        page.click("#login-submit")
        page.wait_for_selector("#teams-panel[data-rendered]")

        def cell(scope: str, name: str) -> str:
            return page.get_attribute(f'#teams tr[data-scope="{scope}"] td.{name}', "data-value") or ""

        scopes = page.eval_on_selector_all("#teams tr[data-scope]", "rows => rows.map(r => r.dataset.scope)")
        ids = {k["name"]: f"key:{k['id']}" for k in listed.values()}
        # the team first, its keys under it, then the keys without a team
        assert scopes == ["team:search", ids["ci-bot"], ids["indexer"], ids["loner"]]
        assert float(cell(ids["ci-bot"], "spend")) == pytest.approx(bot["spend"]["period_usd"])
        assert float(cell(ids["ci-bot"], "left")) == pytest.approx(bot["spend"]["left_usd"])
        assert float(cell(ids["ci-bot"], "use")) == pytest.approx(bot["spend"]["period_usd"] / 0.5)
        assert float(cell("team:search", "spend")) == pytest.approx(team["spend"]["period_usd"])
        assert (cell(ids["ci-bot"], "rpm"), cell(ids["ci-bot"], "tpm")) == ("600", "200000")
        assert cell(ids["indexer"], "parallel") == "4" and cell(ids["loner"], "rpm") == ""
        row = page.inner_text(f'#teams tr[data-scope="{ids["indexer"]}"]')
        assert "revoked" in row
        assert (
            page.inner_text(f'#teams tr[data-scope="{ids["ci-bot"]}"] td.budget')
            == bot["budget"]
            == "0.5/day"
        )

        before = float(cell(ids["ci-bot"], "spend"))
        for _ in range(3):
            _chat(gateway, keys["ci-bot"]["secret"])
        after = _spend_settles(gateway, keys["ci-bot"]["id"], 5)["period_usd"]
        assert after > before
        page.wait_for_function(
            f"""() => {{
                const td = document.querySelector('#teams tr[data-scope="{ids["ci-bot"]}"] td.spend');
                return td && Math.abs(Number(td.dataset.value) - {after}) < 1e-9;
            }}"""
        )
        browser.close()
