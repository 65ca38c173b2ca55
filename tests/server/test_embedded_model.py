"""The embedded SmolLM2 model answering real prompts through `thrifty serve` with no config.

The model is tiny and often wrong: these tests check the mechanics (an answer arrives,
streamed and not, with tokens counted), never that the answer is right."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cwd = tmp_path_factory.mktemp("embedded")
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--port", str(port)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        assert time.monotonic() < deadline, "embedded model did not load in 120 s"
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_embedded_model_answers_with_usage(embedded: str) -> None:
    client = openai.OpenAI(base_url=embedded, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == ["smollm2"]
    reply = client.chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=16,
        temperature=0,
    )
    assert reply.headers["x-thrifty-model"] == "local/smollm2"
    completion = reply.parse()
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 3 and 0 < completion.usage.completion_tokens <= 16


def test_embedded_model_streams_with_usage(embedded: str) -> None:
    client = openai.OpenAI(base_url=embedded, api_key="unused", max_retries=0)
    chunks = list(
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "Count to three."}],
            max_tokens=12,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) >= 2, "the answer should arrive in several pieces"
    usage = chunks[-1].usage
    assert usage is not None and 0 < usage.completion_tokens <= 12


def test_embedded_model_through_the_responses_api(embedded: str) -> None:
    client = openai.OpenAI(base_url=embedded, api_key="unused", max_retries=0)
    response = client.responses.create(
        model="smollm2", input="Name a colour.", instructions="One word.", max_output_tokens=12, temperature=0
    )
    assert response.status in ("completed", "incomplete")  # incomplete: it hit max_output_tokens
    assert response.output[0].type == "message"
    assert response.usage is not None and 0 < response.usage.output_tokens <= 12
    events = list(
        client.responses.create(
            model="smollm2", input="Count to three.", max_output_tokens=12, stream=True, store=False
        )
    )
    assert events[0].type == "response.created"
    assert events[-1].type in ("response.completed", "response.incomplete")
    assert sum(e.type == "response.output_text.delta" for e in events) >= 2
