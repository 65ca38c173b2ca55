"""The dashboard's elastic replicas panel in real headless Chromium, over a gateway with an elastic group."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from tests.processes import free_port

from thrifty.balance.replicas import replica_config
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

from .test_dashboard_browser import ARGS, CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed"),
]
KEY = "sk-scaling-admin"
CHILD = [sys.executable, "-m", "thrifty.fakeupstream", "--port", "{port}", "--latency-ms", "100"]


def elastic_config(tmp_path: Path) -> object:
    base = parse_config(
        {
            "server": {"data_dir": str(tmp_path), "api_keys": [KEY]},
            "models": [
                {
                    "name": "local",
                    "deployments": [{"provider": "local", "model": "m"}],
                    "autoscale": {
                        "min_replicas": 1,
                        "max_replicas": 2,
                        "target_in_flight": 1,
                        "interval_s": 0.1,
                        "window_s": 0.5,
                    },
                }
            ],
        },
        source="thrifty.yaml",
    )
    config = replica_config(base, 0)
    group = config.models[0]
    options = {**group.options, "replicas": {**group.options["replicas"], "command": CHILD}}
    return dataclasses.replace(config, models=(dataclasses.replace(group, options=options),))


def test_the_panel_lists_replicas_and_scaling_decisions_with_reasons(tmp_path: Path) -> None:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    import uvicorn

    gateway = Gateway(elastic_config(tmp_path))  # type: ignore[arg-type]
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="critical", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline and thread.is_alive(), "the gateway never got ready"
            time.sleep(0.1)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(url + "/dashboard?interval=200")
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#login-key", KEY)
            page.click("#login-submit")
            page.wait_for_selector("#scaling-panel:not([hidden]) tr.scaling-group[data-group='local']")
            assert "1 ready" in page.inner_text("tr.scaling-group .scaling-counts")
            assert "max 2" in page.inner_text("tr.scaling-group .scaling-counts")
            # load: four concurrent requests need two replicas; the decision shows with its reason
            body = b'{"model": "local", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}'

            def ask() -> None:
                for _ in range(30):
                    request = urllib.request.Request(
                        url + "/v1/chat/completions",
                        data=body,
                        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=60) as r:
                        assert r.status == 200

            clients = [threading.Thread(target=ask) for _ in range(4)]
            for client in clients:
                client.start()
            page.wait_for_selector("tr.scaling-decision", timeout=60000)
            decision = page.inner_text("tr.scaling-decision")
            assert "1 → 2 (demand)" in decision and "need 2" in decision
            for client in clients:
                client.join(120)
            browser.close()
    finally:
        server.should_exit = True
        thread.join(60)
    assert not thread.is_alive()
