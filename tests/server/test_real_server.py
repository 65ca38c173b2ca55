"""The real path: the official `openai` client against a running `thrifty serve` process,
in front of a fake OpenAI-compatible upstream process on loopback."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from tests.processes import stop as _stop
from tests.processes import wait_ready as _wait

KEY = "sk-thrifty-test"


@dataclass
class Running:
    url: str
    data_dir: Path
    proc: subprocess.Popen[bytes]


def _start_upstream(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(port), "--chunks", "5"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait(f"http://127.0.0.1:{port}/health", proc=proc)
    return proc


def _start_gateway(tmp: Path, upstream_port: int, port: int) -> subprocess.Popen[bytes]:
    cfg = tmp / "thrifty.yaml"
    cfg.write_text(
        f"""
server: {{api_keys: [{KEY}], data_dir: {tmp}}}
model_list:
  - model_name: fake
    litellm_params: {{model: openai/upstream-model, api_base: "http://127.0.0.1:{upstream_port}/v1", api_key: sk-up}}
"""
    )
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--config", str(cfg), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _wait(f"http://127.0.0.1:{port}/ready", proc=proc)
    return proc


@pytest.fixture
def gateway(tmp_path: Path, free_port: int) -> Iterator[Running]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        upstream_port = s.getsockname()[1]
    upstream = _start_upstream(upstream_port)
    proc = _start_gateway(tmp_path, upstream_port, free_port)
    try:
        yield Running(f"http://127.0.0.1:{free_port}/v1", tmp_path, proc)
    finally:
        _stop(proc)
        _stop(upstream)


def _client(run: Running, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=run.url, api_key=key, max_retries=0)


def test_openai_client_plain_stream_and_errors(gateway: Running) -> None:
    client = _client(gateway)
    reply = client.chat.completions.with_raw_response.create(
        model="fake", messages=[{"role": "user", "content": "hello"}]
    )
    assert reply.headers["x-thrifty-model"] == "fake/openai/upstream-model"
    completion = reply.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.total_tokens > 0

    stream = client.chat.completions.create(
        model="fake",
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    assert [m.id for m in client.models.list()] == ["fake"]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert "nope" in str(missing.value)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake", messages=[], temperature=0)
    assert "messages" in str(bad.value)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, key="wrong").chat.completions.create(
            model="fake", messages=[{"role": "user", "content": "x"}]
        )


def test_openai_client_tool_call_round_trip(gateway: Running) -> None:
    client = _client(gateway)
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "description": "Look a word up",
                "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
            },
        }
    ]
    messages: list[dict[str, object]] = [{"role": "user", "content": "What does 'thrifty' mean?"}]
    first = client.chat.completions.create(model="fake", messages=messages, tools=tools)  # type: ignore[arg-type]
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "lookup"  # type: ignore[union-attr]
    assert first.choices[0].finish_reason == "tool_calls"
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "careful with money"})
    second = client.chat.completions.create(model="fake", messages=messages, tools=tools)  # type: ignore[arg-type]
    assert "careful with money" in (second.choices[0].message.content or "")


def test_ledger_keeps_every_answered_request_across_sigterm_mid_load(gateway: Running) -> None:
    answered: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker() -> None:
        body = json.dumps({"model": "fake", "messages": [{"role": "user", "content": "hi"}]}).encode()
        for _ in range(400):  # bounded
            if stop.is_set():
                return
            req = urllib.request.Request(
                gateway.url + "/chat/completions",
                data=body,
                headers={"content-type": "application/json", "authorization": f"Bearer {KEY}"},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    rid = json.load(r)["id"]
            except OSError:
                return
            with lock:
                answered.append(rid)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    while len(answered) < 50:
        time.sleep(0.01)
    gateway.proc.send_signal(signal.SIGTERM)  # mid-load
    # uvicorn shuts down gracefully, then re-raises the signal: exit by SIGTERM is expected.
    assert gateway.proc.wait(30) in (0, -signal.SIGTERM)
    stop.set()
    for t in threads:
        t.join(15)
    db = sqlite3.connect(gateway.data_dir / "ledger.db")
    rows = {r[0] for r in db.execute("SELECT request_id FROM requests WHERE status = 200")}
    assert answered, "no request was answered"
    missing = [rid for rid in answered if rid not in rows]
    assert not missing, f"{len(missing)} of {len(answered)} answered requests have no ledger row"


def test_serve_refuses_public_bind_without_key(tmp_path: Path) -> None:
    thrifty = str(Path(sys.executable).parent / "thrifty")
    env = {k: v for k, v in os.environ.items() if k != "THRIFTY_API_KEYS"}
    done = subprocess.run(
        [thrifty, "serve", "--host", "0.0.0.0"], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 2
    assert "API key" in done.stderr and "THRIFTY_API_KEYS" in done.stderr


def test_serve_with_invalid_config_names_file_and_key(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("model_list:\n  - model_name: x\n    litellm_params: {model: openai/m, timeout: -5}\n")
    thrifty = str(Path(sys.executable).parent / "thrifty")
    done = subprocess.run(
        [thrifty, "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert f"{cfg}: model_list[0].litellm_params.timeout: must be a positive number" in done.stderr


def test_chat_cli_against_running_gateway(gateway: Running) -> None:
    thrifty = str(Path(sys.executable).parent / "thrifty")
    base = gateway.url.removesuffix("/v1")
    done = subprocess.run(
        [thrifty, "chat", "--url", base, "--api-key", KEY, "hello"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    wrong = subprocess.run(
        [thrifty, "chat", "--url", base, "--api-key", "bad", "hello"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert wrong.returncode == 1 and "401" in wrong.stderr


def test_embeddings_from_the_embedded_minilm(gateway: Running) -> None:
    client = _client(gateway)
    result = client.embeddings.create(
        model="all-minilm-l6-v2", input=["a cat sat", "a kitten was sitting", "tax law"]
    )
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 3 and len(vectors[0]) == 384

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(vectors[0], vectors[1]) > cos(vectors[0], vectors[2])
    with pytest.raises(openai.BadRequestError) as empty:
        client.embeddings.create(model="all-minilm-l6-v2", input=[])
    assert "input" in str(empty.value)
    with pytest.raises(openai.NotFoundError, match="upstream"):  # the fake upstream has no /embeddings
        client.embeddings.create(model="fake", input="x")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-embedder", input="x")


def test_admin_status_shows_breaker_state_and_needs_the_key(gateway: Running) -> None:
    base = gateway.url.removesuffix("/v1")
    req = urllib.request.Request(base + "/admin/status", headers={"authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        status = json.load(r)
    balancers = {k: v for k, v in status.items() if k.startswith("Balancer:")}
    assert balancers, status
    text = json.dumps(balancers)
    assert "closed" in text  # the one deployment's breaker
    with pytest.raises(urllib.error.HTTPError) as denied:
        urllib.request.urlopen(base + "/admin/status", timeout=10)
    assert denied.value.code == 401
