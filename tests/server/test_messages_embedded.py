"""The embedded SmolLM2 answering the `anthropic` SDK through /v1/messages on `thrifty serve` with no
config. The model is tiny and often wrong: this checks the mechanics, never the answer."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest
from tests.processes import free_port, stop, wait_ready

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    cwd = tmp_path_factory.mktemp("embedded-messages")
    thrifty = str(Path(sys.executable).parent / "thrifty")
    proc = subprocess.Popen(
        [thrifty, "serve", "--port", str(port)], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_ready(f"http://127.0.0.1:{port}/ready", proc, timeout=120)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_smollm2_answers_the_anthropic_sdk(embedded: str) -> None:
    client = anthropic.Anthropic(base_url=embedded, api_key="unused", max_retries=0)
    message = client.messages.create(
        model="smollm2",
        max_tokens=16,
        system="Answer in one word.",
        messages=[{"role": "user", "content": "Name a colour."}],
    )
    assert message.content and message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 3 and 0 < message.usage.output_tokens <= 16
    with client.messages.stream(
        model="smollm2", max_tokens=8, messages=[{"role": "user", "content": "Say hi."}]
    ) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")
