"""Tokens the compressor saved reach the ledger, the dashboard (in Chromium) and `thrifty usage`."""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from tests.processes import serve, stop

from thrifty.observe.usage import summarize, usage_main

from .histories import agent_history, chat_history

ADMIN = "sk-admin-compress"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    config = tmp_path / "thrifty.yaml"
    config.write_text(f"""
server: {{api_keys: [{ADMIN}], data_dir: {tmp_path}}}
models:
  - name: m
    compress: {{mode: balanced, budget_tokens: 600}}
    deployments: [{{provider: fake, model: x, options: {{script: "ok"}}}}]
""")
    proc, url = serve(config)
    try:
        yield url, tmp_path / "ledger.db"
    finally:
        stop(proc)


def saved_by(header: str) -> int:
    """Tokens saved as the ``x-thrifty-compress`` header says: ``balanced 2,140->1,210 tokens ...``."""
    found = re.match(r"\w+ ([\d,]+)->([\d,]+) tokens", header)
    assert found, header
    before, after = (int(g.replace(",", "")) for g in found.groups())
    return before - after


def test_the_saving_is_counted_everywhere(
    served: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    url, ledger = served
    client = openai.OpenAI(base_url=url + "/v1", api_key=ADMIN, max_retries=0)
    expected = 0
    for messages in (chat_history(), agent_history(), chat_history(6)):
        raw = client.chat.completions.with_raw_response.create(model="m", messages=messages)  # type: ignore[arg-type]
        expected += saved_by(raw.headers["x-thrifty-compress"])
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])  # too short
    assert expected > 1000

    asked = urllib.request.Request(url + "/dashboard/api/stats", headers={"authorization": f"Bearer {ADMIN}"})
    with urllib.request.urlopen(asked, timeout=30) as answer:
        stats = json.loads(answer.read())
    assert stats["totals"]["saved_tokens"] == expected
    if shutil.which(CHROMIUM):
        sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(url + "/dashboard?interval=200")
            page.fill("#login-key", ADMIN)
            page.click("#login-submit")
            page.wait_for_selector("body[data-rendered]")
            assert page.get_attribute("#kpi-tokens-saved", "data-value") == str(expected)
            assert page.inner_text("#kpi-tokens-saved") == f"{expected:,}"
            browser.close()

    for _ in range(200):  # the ledger's writer thread stores rows in batches: wait for all four
        total = summarize(str(ledger), "model")[-1]
        if total["requests"] == 4:
            break
        time.sleep(0.05)
    assert total["tokens_saved"] == expected
    assert usage_main(["--ledger", str(ledger), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[-1]["tokens_saved"] == expected
    assert usage_main(["--ledger", str(ledger)]) == 0
    table = capsys.readouterr().out
    assert "compressed out" in table and f"{expected:,}" in table
