"""CORS by config: a page on a second origin in real headless Chromium calls the gateway.

With ``server.cors`` listing the page's origin, the preflighted POST goes through and the page
reads the answer and thrifty's exposed headers; without it (the default) the browser refuses."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend

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
KEY = "sk-cors-test"

PAGE = """<!doctype html><meta charset="utf-8"><title>app</title><script>
async function ask(gateway) {
  try {
    const r = await fetch(gateway + "/v1/chat/completions", {
      method: "POST",
      headers: {"authorization": "Bearer %KEY%", "content-type": "application/json"},
      body: JSON.stringify({model: "fake", messages: [{role: "user", content: "hi"}]}),
    });
    const body = await r.json();
    return {ok: true, status: r.status, text: body.choices[0].message.content,
            model: r.headers.get("x-thrifty-model")};
  } catch (e) {
    return {ok: false, error: String(e)};
  }
}
</script>""".replace("%KEY%", KEY)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def page_origin() -> Iterator[str]:
    """A static page server on its own port: a second origin."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = PAGE.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", _port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextmanager
def gateway(tmp: Path, cors: dict[str, Any] | None) -> Iterator[str]:
    import uvicorn

    server_config: dict[str, Any] = {"api_keys": [KEY], "data_dir": str(tmp)}
    if cors is not None:
        server_config["cors"] = cors
    config = parse_config({"server": server_config})
    app = create_app(Gateway(config, backends={"fake": FakeBackend("hello from thrifty")}, observe=False))
    port = _port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "gateway did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def _ask_from_page(origin: str, url: str) -> dict[str, Any]:
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.goto(origin + "/")
            result: dict[str, Any] = page.evaluate("gateway => ask(gateway)", url)
        finally:
            browser.close()
    return result


@pytest.mark.browser
@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian chromium is not installed")
def test_a_page_on_another_origin_may_call_only_when_cors_allows_it(tmp_path: Path) -> None:
    with page_origin() as origin:
        with gateway(tmp_path / "on", {"origins": [origin]}) as url:
            allowed = _ask_from_page(origin, url)
        with gateway(tmp_path / "off", None) as url:
            refused = _ask_from_page(origin, url)
    assert allowed == {"ok": True, "status": 200, "text": "hello from thrifty", "model": "fake"}
    assert refused["ok"] is False and "Failed to fetch" in refused["error"]


async def test_preflight_answers_and_refusals(tmp_path: Path) -> None:
    config = parse_config(
        {
            "server": {
                "data_dir": str(tmp_path),
                "cors": {"origins": ["https://app.example.com"], "max_age": 60},
            }
        }
    )
    app = create_app(Gateway(config, backends={"fake": FakeBackend("hi")}, observe=False))
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://thrifty") as client:
        ok = await client.options("/v1/messages", headers={"origin": "https://app.example.com", **preflight})
        other = await client.options("/v1/messages", headers={"origin": "https://evil.example", **preflight})
        answer = await client.post(
            "/v1/chat/completions",
            headers={"origin": "https://app.example.com"},
            json={"model": "fake", "messages": [{"role": "user", "content": "x"}]},
        )
    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://app.example.com"
    assert ok.headers["access-control-max-age"] == "60"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert answer.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-thrifty-model" in answer.headers["access-control-expose-headers"]


async def test_without_cors_config_preflight_is_refused(tmp_path: Path) -> None:
    app = create_app(
        Gateway(
            parse_config({"server": {"data_dir": str(tmp_path)}}),
            backends={"fake": FakeBackend("hi")},
            observe=False,
        )
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://thrifty") as client:
        r = await client.options(
            "/v1/models",
            headers={"origin": "https://app.example.com", "access-control-request-method": "GET"},
        )
    assert r.status_code == 405 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    ("cors", "key", "problem"),
    [
        ("yes", "server.cors", "mapping"),
        ({"origins": []}, "server.cors.origins", "non-empty list"),
        ({"origins": ["app.example.com"]}, "server.cors.origins[0]", "scheme://host"),
        ({"origins": ["*"], "credentials": True}, "server.cors.credentials", "cannot be true"),
        ({"origins": ["*"], "max_age": -1}, "server.cors.max_age", ">= 0"),
        ({"origins": ["*"], "allow": 1}, "server.cors.allow", "unknown setting"),
    ],
)
def test_bad_cors_settings_stop_startup(cors: Any, key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_config({"server": {"cors": cors}})
    assert caught.value.param == key
