"""The pool's HTTP doors in one process: a gateway under uvicorn on loopback, the reference worker
and the full worker's loop in threads (a scripted backend in place of llama.cpp), the `thrifty
pool` CLI, and the OpenAPI document the pool's routes must match."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from jsonschema import Draft202012Validator

from thrifty.config import parse_config
from thrifty.errors import ContextWindowExceeded
from thrifty.gateway import Gateway
from thrifty.pool.cli import pool_main
from thrifty.pool.reference_worker import PoolClient, echo, serve
from thrifty.pool.worker import Runner, capabilities, power_state
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend

from .conftest import ADMIN, call

pytestmark = pytest.mark.redis


@pytest.fixture
def live(tmp_path: Path, redis_url: str) -> Iterator[str]:
    import uvicorn

    groups = [
        {"name": m, "deployments": [{"provider": "pool", "model": m}]} for m in ("echo", "smollm2", "bad")
    ]
    config = parse_config(
        {
            "server": {"api_keys": [ADMIN], "data_dir": str(tmp_path)},
            "models": groups,
            "pool": {"redis_url": redis_url, "heartbeat": 0.3, "grace": 0.3, "lease_wait": 1},
        }
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Gateway(config)), host="127.0.0.1", port=port, log_level="critical", loop="asyncio"
        )
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/ready", timeout=2):
                break
        except OSError:
            assert time.monotonic() < deadline, "the gateway did not start"
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


def cli(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> str:
    assert pool_main(["--url", url, "--key", ADMIN, *args]) == 0
    return capsys.readouterr().out


def refuse_long(request: Any) -> str:
    if request.messages[-1]["content"].startswith("Count"):
        return "one two three"  # the speed measurement at start
    raise ContextWindowExceeded("The prompt is longer than this worker's context.")


def test_both_workers_serve_through_the_gateway_and_the_cli_shows_them(
    live: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ref_token = cli(capsys, live, "token", "ref").split()[2]
    full_token = cli(capsys, live, "token", "full").split()[2]
    stops = [threading.Event(), threading.Event()]
    echo_caps = {"models": [{"name": "echo", "n_ctx": 4096, "tokens_per_s": 100.0}], "concurrency": 2}
    runner = Runner({"smollm2": FakeBackend("from the runner"), "bad": FakeBackend(refuse_long)})
    threads = [
        threading.Thread(target=serve, args=(PoolClient(live, ref_token), echo_caps, echo, stops[0], 2)),
        threading.Thread(
            target=serve,
            args=(
                PoolClient(live, full_token),
                capabilities(runner, n_ctx=2048, concurrency=1),
                runner.work,
                stops[1],
            ),
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 30
        while "full" not in cli(capsys, live, "workers") or "ref" not in cli(capsys, live, "workers"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.3)
        client = openai.OpenAI(base_url=live + "/v1", api_key=ADMIN, max_retries=0)
        messages: Any = [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "say it back"},
        ]
        assert client.chat.completions.create(model="echo", messages=messages).choices[0].message.content == (
            "say it back"
        )
        streamed = client.chat.completions.create(model="echo", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "say it back"
        answer = client.chat.completions.create(model="smollm2", messages=messages)
        assert answer.choices[0].message.content == "from the runner"
        streamed = client.chat.completions.create(model="smollm2", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "from the runner"
        with pytest.raises(openai.BadRequestError) as refused:
            client.chat.completions.create(model="bad", messages=messages)
        assert refused.value.code == "context_length_exceeded"
        listing = cli(capsys, live, "workers")
        assert "dispatched=5" in listing and "smollm2(2048," in listing
        assert {"full", "ref"} <= set(
            json.loads(cli(capsys, live, "tokens", "--json"))[i]["name"] for i in (0, 1)
        )
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(30)
        runner.close()
    _, overview = call(live, "/admin/pool/workers")
    assert {w["name"]: w["state"] for w in overview["workers"]} == {"ref": "gone", "full": "gone"}
    token_id = json.loads(cli(capsys, live, "tokens", "--json"))[0]["id"]
    assert cli(capsys, live, "revoke", token_id).strip() == f"revoked {token_id}"
    with pytest.raises(SystemExit, match="404"):
        pool_main(["--url", live, "--key", ADMIN, "revoke", token_id])


def test_the_pool_routes_are_documented_and_their_answers_match(live: str) -> None:
    with urllib.request.urlopen(live + "/openapi.json") as answer:
        doc = json.loads(answer.read())
    pool_paths = {p for p in doc["paths"] if p.startswith(("/pool/", "/admin/pool/"))}
    assert pool_paths == {
        "/pool/v1/join",
        "/pool/v1/lease",
        "/pool/v1/heartbeat",
        "/pool/v1/tasks/{task_id}/result",
        "/pool/v1/release",
        "/admin/pool/workers",
        "/admin/pool/tokens",
        "/admin/pool/tokens/{token_id}",
    }
    assert "/dashboard/api/pool" in doc["paths"]

    def check(template: str, method: str, status: int, body: dict[str, Any]) -> None:
        response = doc["paths"][template][method]["responses"][str(status)]
        if "$ref" in response:
            response = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
        schema = response["content"]["application/json"]["schema"]
        Draft202012Validator({**schema, "components": doc["components"]}).validate(body)

    status, made = call(live, "/admin/pool/tokens", {"name": "doc"})
    check("/admin/pool/tokens", "post", status, made)
    token = made["token"]
    caps = {"models": [{"name": "echo", "n_ctx": 64, "tokens_per_s": 1.0}]}
    probes: list[tuple[str, str, Any, str | None, int]] = [
        ("/pool/v1/join", "post", {"capabilities": caps}, token, 200),
        ("/pool/v1/join", "post", {"capabilities": {}}, token, 400),
        ("/pool/v1/join", "post", {"capabilities": caps}, "wrong", 401),
        ("/pool/v1/lease", "post", {"wait": 0}, token, 200),
        ("/pool/v1/heartbeat", "post", {"active": 0, "power": "ac"}, token, 200),
        ("/pool/v1/tasks/{task_id}/result", "post", {"lease": "x" * 16, "chunks": []}, token, 404),
        ("/pool/v1/release", "post", {"leave": False}, token, 200),
        ("/admin/pool/workers", "get", None, ADMIN, 200),
        ("/dashboard/api/pool", "get", None, ADMIN, 200),
        ("/admin/pool/tokens", "get", None, ADMIN, 200),
        ("/admin/pool/tokens", "post", {"name": "bad name!"}, ADMIN, 400),
        ("/admin/pool/tokens", "post", {"name": "x", "more": 1}, ADMIN, 400),
        ("/admin/pool/workers", "get", None, None, 401),
        ("/pool/v1/release", "post", {"leave": True}, token, 200),
        ("/pool/v1/lease", "post", {"wait": 0}, token, 409),
    ]
    for template, method, body, key, expect in probes:
        path = template.replace("{task_id}", "0" * 20)
        status, answer = call(live, path, body, key=key, method=method.upper())
        assert status == expect, (template, answer)
        check(template, method, status, answer)
    status, answer = call(live, "/pool/v1/tasks/nope/result", {"lease": "x" * 16}, key=token)
    assert status == 400 and answer["error"]["param"] == "task_id"
    status, answer = call(live, f"/admin/pool/tokens/{made['id']}", method="DELETE")
    check("/admin/pool/tokens/{token_id}", "delete", status, answer)


def test_power_state_reads_the_os_power_supply_class(tmp_path: Path) -> None:
    assert power_state(tmp_path / "missing") == ("unknown", None)
    (tmp_path / "AC").mkdir()
    (tmp_path / "AC" / "type").write_text("Mains\n")
    (tmp_path / "AC" / "online").write_text("0\n")
    assert power_state(tmp_path) == ("unknown", None)
    (tmp_path / "BAT0").mkdir()
    (tmp_path / "BAT0" / "type").write_text("Battery\n")
    (tmp_path / "BAT0" / "status").write_text("Discharging\n")
    (tmp_path / "BAT0" / "capacity").write_text("42\n")
    assert power_state(tmp_path) == ("battery", 42.0)
    (tmp_path / "AC" / "online").write_text("1\n")
    assert power_state(tmp_path) == ("ac", 42.0)


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium is not installed")
def test_the_dashboard_panel_shows_the_workers_their_capabilities_and_load(live: str) -> None:
    from playwright.sync_api import sync_playwright

    status, made = call(live, "/admin/pool/tokens", {"name": "panel-worker"})
    assert status == 201
    stop = threading.Event()
    caps = {"models": [{"name": "echo", "n_ctx": 4096, "tokens_per_s": 123.0}], "concurrency": 3}
    thread = threading.Thread(target=serve, args=(PoolClient(live, made["token"]), caps, echo, stop, 3))
    thread.start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
            )
            page = browser.new_page()
            page.goto(live + "/dashboard?interval=200")
            page.wait_for_selector("#login:not([hidden])")
            page.fill("#login-key", ADMIN)
            page.click("#login-submit")
            page.wait_for_selector("#pool-workers tr[data-state=active]")
            row = page.inner_text("#pool-workers tr")
            assert "panel-worker" in row and "echo (4096 ctx, 123 tok/s)" in row and "0 / 3" in row
            assert "tasks sent 0" in page.inner_text("#pool-stats")
            assert "joined" in page.inner_text("#pool-events")
            browser.close()
    finally:
        stop.set()
        thread.join(30)
